//! The commands of `celnet`: one file per command, each with its arguments and a `run` that
//! calls the library and reports.

mod average;
mod calibrate;
mod cohort;
mod common;
mod eval;
mod explain;
mod faithfulness;
mod heatmap;
mod info;
mod localize_eval;
mod localize_tune;
mod mosaic;
mod predict;
mod recalibrate;
mod serve;
mod slide_eval;
mod slide_fit;
mod slide_mosaic;
mod stain_shift;
mod train;

use clap::{Parser, Subcommand};

use celnet::{CelnetError, Result};

#[derive(Parser)]
#[command(
    name = "celnet",
    version,
    about = "CELNet + CELM: metastasis detection and evidence maps for H&E glimpses"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for the flex backend's kernels and the slide readers (default: one per
    /// core, or RAYON_NUM_THREADS).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<std::num::NonZeroUsize>,
}

#[derive(Subcommand)]
enum Command {
    /// Describe the network: parameter count and the shapes of F2 and F3 for a 96x96 glimpse.
    Info(info::Args),
    /// Probability of metastasis for each image (with --json: one JSON object per line).
    Predict(predict::Args),
    /// Evidence maps (CAM2, CAM3, CSM, Mc, CELM), mask, regions and an overlay for one image.
    Explain(explain::Args),
    /// Probability map of an image larger than a glimpse: windows at the model's scale, slide
    /// score, tumour points, QuPath GeoJSON.
    Heatmap(heatmap::Args),
    /// Merge many slides' `heatmap` outputs: cohort.csv, cohort.json, an overview page, and
    /// with labels the slide AUC and calls at the operating threshold.
    Cohort(cohort::Args),
    /// Train on PCam patch folders (ROOT/{train,valid}/{0,1}/*) or the PCam HDF5 files.
    Train(train::Args),
    /// Accuracy, AUC, confusion matrix and ROC curve on a split folder (DIR/0, DIR/1).
    Eval(eval::Args),
    /// A copy of a labelled split with its stains shifted (severity 0 to 3), for robustness.
    StainShift(stain_shift::Args),
    /// Temperature scaling: fit on half a labelled split, judge on the other half, write the
    /// weights with the temperature folded in.
    Calibrate(calibrate::Args),
    /// Re-estimate the batch-norm statistics of a network on whole training patches.
    Recalibrate(recalibrate::Args),
    /// Average the weights of several networks from one training run (e.g. checkpoints).
    Average(average::Args),
    /// Mosaic glimpses with exact tumour masks: 3x3 centre crops of PCam patches.
    Mosaic(mosaic::Args),
    /// Region precision and recall (the paper's 75% rule), pixel IoU and AUROC on mosaics.
    LocalizeEval(localize_eval::Args),
    /// Grid-search each method's parameters on mosaics; score the tuned methods on --test.
    LocalizeTune(localize_tune::Args),
    /// Deletion curves: how fast the probability falls as the most evident pixels go.
    Faithfulness(faithfulness::Args),
    /// Synthetic slides with known lesions, built from whole PCam patches.
    SlideMosaic(slide_mosaic::Args),
    /// Slide AUC and FROC (Camelyon16's measures) on synthetic slides.
    SlideEval(slide_eval::Args),
    /// Fit the slide model (lesion thresholds, coefficients, calibration) on saved heatmaps.
    SlideFit(slide_fit::Args),
    /// Serve the browser client (index.html, www/, pkg/) to a browser on this machine.
    Serve(serve::Args),
}

/// How a command that completed went.
pub enum Outcome {
    Done,
    /// Some inputs failed (each was reported); the exit status says so.
    SomeFailed,
}

impl Cli {
    pub fn run(self) -> Result<Outcome> {
        if let Some(threads) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads.get())
                .build_global()
                .map_err(|e| {
                    CelnetError::Backend(format!("cannot start {threads} threads: {e}"))
                })?;
        }
        let done = |()| Outcome::Done;
        match self.command {
            Command::Info(args) => info::run(args).map(done),
            Command::Predict(args) => predict::run(args),
            Command::Explain(args) => explain::run(args).map(done),
            Command::Heatmap(args) => heatmap::run(args).map(done),
            Command::Cohort(args) => cohort::run(args).map(done),
            Command::Train(args) => train::run(args).map(done),
            Command::Eval(args) => eval::run(args).map(done),
            Command::Calibrate(args) => calibrate::run(args).map(done),
            Command::StainShift(args) => stain_shift::run(args).map(done),
            Command::Recalibrate(args) => recalibrate::run(args).map(done),
            Command::Average(args) => average::run(args).map(done),
            Command::Mosaic(args) => mosaic::run(args).map(done),
            Command::LocalizeEval(args) => localize_eval::run(args).map(done),
            Command::LocalizeTune(args) => localize_tune::run(args).map(done),
            Command::Faithfulness(args) => faithfulness::run(args).map(done),
            Command::SlideMosaic(args) => slide_mosaic::run(args).map(done),
            Command::SlideEval(args) => slide_eval::run(args).map(done),
            Command::SlideFit(args) => slide_fit::run(args).map(done),
            Command::Serve(args) => serve::run(args).map(done),
        }
    }
}
