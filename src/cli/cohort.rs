//! `celnet cohort`: many slides' results merged into one table, a JSON summary and an offline
//! overview page; with labels, the slide AUC, ROC curve and calls at the operating threshold.

use std::path::{Path, PathBuf};
use std::time::Instant;

use celnet::cohort::{Cohort, STATUS, SUMMARY, page, read_labels};
use celnet::train::plot;
use celnet::{CelnetError, Result};

use super::common::{OutputFolder, PrintReport, Source, emit, json_line};
use super::slide_eval::read_slide_model;

#[derive(clap::Args)]
pub struct Args {
    /// Output folders of `celnet heatmap`, one per slide; a folder that holds no summary is
    /// taken as a folder of such folders.
    #[arg(required = true, num_args = 1..)]
    results: Vec<PathBuf>,
    /// Output folder: cohort.csv, cohort.json, index.html (and roc.png with labels).
    #[arg(short, long)]
    out: PathBuf,
    /// CSV of slide labels: a `label` column (1/0, tumour/normal, positive/negative) and a
    /// `name` (output folder) or `path` (slide file) column.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Operating threshold on the slide probability; the slide model's when absent.
    #[arg(long)]
    threshold: Option<f64>,
    /// Slide model whose threshold to use (from `celnet slide-fit`); the shipped one when absent.
    #[arg(long, conflicts_with = "threshold")]
    slide_model: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

impl PrintReport for Cohort {
    fn print_text(&self) {
        println!(
            "{} slides: {} scored, {} failed, {} unfinished",
            self.slides, self.ok, self.failed, self.unfinished
        );
        for row in self.rows.iter().filter(|r| r.status != "ok") {
            println!(
                "  {} ({}): {}",
                row.name,
                row.status,
                row.error.as_deref().unwrap_or("")
            );
        }
        if let Some(m) = &self.measures {
            let auc = |a: Option<f64>| a.map_or("-".into(), |a| format!("{a:.3}"));
            println!(
                "{} labelled slides scored ({} with metastasis): slide AUC probability {}, \
                 maximum {}; at probability >= {:.3}: sensitivity {:.3}, specificity {:.3}, \
                 accuracy {:.3}",
                m.scored,
                m.positives,
                auc(m.auc_probability),
                auc(m.auc_score),
                m.threshold,
                m.sensitivity,
                m.specificity,
                m.accuracy
            );
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let threshold = match args.threshold {
        Some(t) if (0.0..=1.0).contains(&t) => t,
        Some(t) => {
            return Err(CelnetError::InvalidParameter(format!(
                "--threshold {t}: expected a probability from 0 to 1"
            )));
        }
        None => read_slide_model(args.slide_model.as_deref())?.threshold,
    };
    let labels = args.labels.as_deref().map(read_labels).transpose()?;
    let dirs = slide_folders(&args.results)?;
    let cohort = Cohort::read(&dirs, labels.as_ref(), threshold)?;
    let out = OutputFolder::create(&args.out, "cohort.json")?;
    out.write("cohort.csv", cohort.csv()?.as_bytes())?;
    out.write("index.html", page::render(&cohort, &args.out).as_bytes())?;
    if let Some(measures) = &cohort.measures
        && let Some(auc) = measures.auc_probability
    {
        plot::roc_curve(&measures.roc_probability, auc, &out.path("roc.png"))?;
    }
    let source = Source {
        backend: "summaries",
        weights: cohort
            .weights
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    };
    out.write("cohort.json", json_line(&cohort, &source, None).as_bytes())?;
    out.commit()?;
    emit(&cohort, args.json, &source, Some(start));
    Ok(())
}

/// The slide folders among `results`: each folder with a summary or a status is one; any other
/// folder stands for its subfolders.
fn slide_folders(results: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let is_slide = |dir: &Path| dir.join(SUMMARY).is_file() || dir.join(STATUS).is_file();
    let mut dirs = Vec::new();
    for result in results {
        if !result.is_dir() {
            return Err(CelnetError::InvalidParameter(format!(
                "{}: not a folder; give `celnet heatmap` output folders",
                result.display()
            )));
        }
        if is_slide(result) {
            dirs.push(result.clone());
            continue;
        }
        let mut inner: Vec<PathBuf> = std::fs::read_dir(result)
            .map_err(|e| CelnetError::io(result, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                let hidden = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                path.is_dir() && !hidden
            })
            .collect();
        if inner.is_empty() {
            return Err(CelnetError::InvalidParameter(format!(
                "{}: holds neither a {SUMMARY} nor slide folders",
                result.display()
            )));
        }
        inner.sort();
        dirs.extend(inner);
    }
    Ok(dirs)
}
