//! `celnet localize-eval`: how well one method's regions find tumour on mosaics with masks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use celnet::Result;
use celnet::explain::{Explainer, PreparedEvidence};
use celnet::studies::glimpse_mosaic::load_labelled;
use celnet::studies::localize::{LocalizationReport, Method, PreparedGlimpse, score_localisation};

use super::common::{CelmArgs, ModelArgs, PrintReport, emit, progress};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of glimpses NAME.png with tumour masks NAME_mask.png.
    dir: PathBuf,
    #[arg(long, value_enum, default_value = "celm")]
    method: Method,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    celm: CelmArgs,
    #[command(flatten)]
    model: ModelArgs,
}

impl PrintReport for LocalizationReport {
    fn print_text(&self) {
        print_table(&format!("{} glimpses", self.n), std::slice::from_ref(self));
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = args.model.load()?;
    let params = args.celm.params();
    let start = Instant::now();
    let glimpses = prepare_glimpses(&loaded.explainer(), &args.dir, &[params.sigma])?;
    let report = score_localisation(&glimpses, args.method, &params)?;
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
}

/// Explains every labelled glimpse of `dir` once, with CSMs for `sigmas` ready.
pub fn prepare_glimpses(
    explainer: &Explainer,
    dir: &Path,
    sigmas: &[f32],
) -> Result<Vec<PreparedGlimpse>> {
    let glimpses = load_labelled(dir)?;
    let bar = progress(glimpses.len(), "explaining");
    let prepared = glimpses
        .into_iter()
        .map(|g| {
            let evidence = pollster::block_on(explainer.evidence(&g.image))?;
            bar.inc(1);
            PreparedGlimpse::new(&g.name, PreparedEvidence::new(evidence, sigmas), g.truth)
        })
        .collect();
    bar.finish_and_clear();
    prepared
}

/// The localisation table of docs/localisation.md, one row per report.
pub fn print_table(title: &str, reports: &[LocalizationReport]) {
    println!("{title}");
    println!(
        "| method | precision | recall | F1 | pixel IoU | pixel AUROC | a | b | threshold | sigma |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} |",
            r.method.title(),
            r.precision,
            r.recall,
            r.f1,
            r.iou,
            r.pixel_auroc.map_or("-".into(), |a| format!("{a:.3}")),
            r.params.alpha,
            r.params.beta,
            r.params.threshold,
            r.params.sigma
        );
    }
}
