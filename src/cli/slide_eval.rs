//! `celnet slide-eval`: slide AUC and FROC on synthetic slides with known lesions.

use std::path::PathBuf;
use std::time::Instant;

use celnet::Result;
use celnet::slide::{DEFAULT_STRIDE, Mode, ScanConfig};
use celnet::studies::slide_mosaic::{SlideEvaluation, evaluate_slides};

use super::common::{ModelArgs, PrintReport, emit, progress};

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
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

impl PrintReport for SlideEvaluation {
    fn print_text(&self) {
        println!(
            "{} slides ({} with {} lesions), stride {} ({}): slide AUC {}, FROC {:.3}",
            self.n,
            self.tumour_slides,
            self.lesions,
            self.stride,
            if self.mode == Mode::Exact {
                "exact"
            } else {
                "dense"
            },
            self.auc.map_or("-".into(), |a| format!("{a:.3}")),
            self.froc
        );
        for (rate, sensitivity) in &self.sensitivity_at_fp {
            println!("  sensitivity at {rate} false positives per slide: {sensitivity:.3}");
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = args.model.load()?;
    let start = Instant::now();
    let bar = progress(0, "slides");
    let config = ScanConfig {
        stride: args.stride,
        mode: if args.exact { Mode::Exact } else { Mode::Dense },
        ..ScanConfig::default()
    };
    let evaluation = evaluate_slides(&loaded.classifier(), &args.dir, &config, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    emit(&evaluation, args.json, &loaded.source, Some(start));
    Ok(())
}
