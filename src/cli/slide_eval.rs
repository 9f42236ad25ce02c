//! `celnet slide-eval`: slide AUC, FROC, lesions and categories on synthetic slides with known
//! lesions.

use std::path::{Path, PathBuf};
use std::time::Instant;

use celnet::slide::{DEFAULT_STRIDE, Mode, ScanConfig, SlideModel};
use celnet::studies::slide_mosaic::{ScoredSet, SlideEvaluation, evaluate_scored, score_slides};
use celnet::{CelnetError, Result};

use super::common::{ModelArgs, PrintReport, Source, emit, progress};

#[derive(clap::Args)]
pub struct Args {
    /// Folder made by `celnet slide-mosaic`.
    dir: PathBuf,
    /// Distance between window positions at the model's scale (16 to 96).
    #[arg(long, default_value_t = DEFAULT_STRIDE)]
    stride: usize,
    /// Score every window on its own instead of with the dense pass.
    #[arg(long)]
    exact: bool,
    /// Also write the heatmaps (JSON), to evaluate them again with `--scored` or fit a slide
    /// model on them with `celnet slide-fit`.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Evaluate heatmaps written by `--save` instead of scoring the slides.
    #[arg(long, conflicts_with_all = ["save", "exact"])]
    scored: Option<PathBuf>,
    /// Slide model (lesion thresholds and coefficients); the shipped one when absent.
    #[arg(long)]
    slide_model: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

impl PrintReport for SlideEvaluation {
    fn print_text(&self) {
        let auc = |a: Option<f64>| a.map_or("-".into(), |a| format!("{a:.3}"));
        println!(
            "{} slides ({} with {} lesions), stride {} ({}), median {:.1} s per slide",
            self.n,
            self.tumour_slides,
            self.lesions,
            self.stride,
            if self.mode == Mode::Exact {
                "exact"
            } else {
                "dense"
            },
            self.median_seconds
        );
        println!(
            "  slide AUC: probability {}, maximum {}; ECE {:.3}; accuracy {:.3}",
            auc(self.auc_probability),
            auc(self.auc),
            self.ece_probability,
            self.accuracy_probability
        );
        println!(
            "  FROC: lesion peaks {:.3}, tumour points {:.3}",
            self.froc_lesions, self.froc
        );
        println!(
            "  lesions per normal slide {:.2}, false lesions per slide {:.2}, category accuracy {:.3}",
            self.false_lesions_per_normal_slide,
            self.false_lesions_per_slide,
            self.category_accuracy
        );
        if !self.false_lesion_patches.is_empty() {
            let most: Vec<String> = self
                .false_lesion_patches
                .iter()
                .take(5)
                .map(|(patch, count)| format!("{patch} {count}"))
                .collect();
            println!(
                "  false lesions lie on {} distinct patches; most: {}",
                self.false_lesion_patches.len(),
                most.join(", ")
            );
        }
    }
}

/// Reads a slide model file.
pub fn read_slide_model(path: Option<&Path>) -> Result<SlideModel> {
    match path {
        None => Ok(SlideModel::shipped().clone()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| CelnetError::io(path, e))?;
            SlideModel::from_json(&text)
                .map_err(|e| CelnetError::InvalidParameter(format!("{}: {e}", path.display())))
        }
    }
}

/// Reads heatmaps written by `slide-eval --save`.
pub fn read_scored(path: &Path) -> Result<ScoredSet> {
    let text = std::fs::read_to_string(path).map_err(|e| CelnetError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| CelnetError::Dataset(format!("{}: not saved heatmaps: {e}", path.display())))
}

pub fn run(args: Args) -> Result<()> {
    let slide_model = read_slide_model(args.slide_model.as_deref())?;
    let start = Instant::now();
    let (scored, source) = match &args.scored {
        Some(path) => {
            let scored = read_scored(path)?;
            let source = Source {
                backend: "saved heatmaps",
                weights: scored.weights.clone(),
            };
            (scored, source)
        }
        None => {
            let loaded = args.model.load()?;
            let bar = progress(0, "slides");
            let config = ScanConfig {
                stride: args.stride,
                mode: if args.exact { Mode::Exact } else { Mode::Dense },
                ..ScanConfig::default()
            };
            let mut scored =
                score_slides(&loaded.classifier(), &args.dir, &config, |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })?;
            bar.finish_and_clear();
            scored.weights = loaded.source.weights.clone();
            if let Some(path) = &args.save {
                let text = serde_json::to_string(&scored).expect("heatmaps serialise");
                std::fs::write(path, text).map_err(|e| CelnetError::io(path, e))?;
            }
            (scored, loaded.source)
        }
    };
    let evaluation = evaluate_scored(&args.dir, &scored, &slide_model)?;
    emit(&evaluation, args.json, &source, Some(start));
    Ok(())
}
