//! `celnet faithfulness`: deletion curves of each map over the glimpses called positive.

use std::path::PathBuf;
use std::time::Instant;

use celnet::Result;
use celnet::input::read_image;
use celnet::studies::faithfulness::{DeletionOptions, DeletionStudy, FaithfulnessReport, Fill};
use celnet::studies::glimpse_mosaic::list_glimpses;

use super::common::{CelmArgs, ModelArgs, PrintReport, emit, progress};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of glimpses (masks are not needed); those predicted positive are used.
    dir: PathBuf,
    #[arg(long, default_value_t = DeletionOptions::default().steps)]
    steps: usize,
    /// What deleted pixels become (this network reads a blurred glimpse as tumour).
    #[arg(long, value_enum, default_value = "white")]
    fill: Fill,
    /// Gaussian sigma (px) of the blurred copy for --fill blur.
    #[arg(long, default_value_t = DeletionOptions::default().blur_sigma)]
    blur_sigma: f32,
    /// Use at most this many positive glimpses.
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the random baseline map and of tie-breaking.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    celm: CelmArgs,
    #[command(flatten)]
    model: ModelArgs,
}

impl PrintReport for FaithfulnessReport {
    fn print_text(&self) {
        println!(
            "deletion curves over {} positive glimpses of {} examined (lower is more faithful):",
            self.n, self.glimpses
        );
        for m in &self.methods {
            println!(
                "  {:<10} AUC {:.4}   relative to the first point {:.4}",
                m.method, m.auc, m.relative_auc
            );
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = args.model.load()?;
    let explainer = loaded.explainer();
    let options = DeletionOptions {
        steps: args.steps,
        fill: args.fill,
        blur_sigma: args.blur_sigma,
    };
    let mut study = DeletionStudy::new(options, args.celm.params(), args.seed)?;
    let start = Instant::now();
    let files = list_glimpses(&args.dir)?;
    let bar = progress(files.len(), "deleting");
    for path in &files {
        if args.limit.is_some_and(|limit| study.positives() >= limit) {
            break;
        }
        pollster::block_on(study.add(&explainer, &read_image(path)?))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    emit(&study.report()?, args.json, &loaded.source, Some(start));
    Ok(())
}
