//! `celnet train`: trains (or resumes) a run on PCam patch folders or the PCam HDF5 files.

use std::path::PathBuf;
use std::time::Instant;

use celnet::train::data::{Half, load_split};
use celnet::train::{OptimizerKind, Schedule, TrainOptions, train};
use celnet::{Result, weights};

use super::common::BackendChoice;

#[derive(clap::Args)]
pub struct Args {
    /// Data root: train/ and valid/ split folders, or the official PCam HDF5 files
    /// (camelyonpatch_level_2_split_{train,valid}_{x,y}.h5). Epochs are validated (and the
    /// best chosen) on the valid split's selection half only; its report half stays unseen.
    #[arg(long)]
    data: PathBuf,
    /// Run folder (checkpoints, metrics.csv, curves.png, best.bpk); an existing run resumes.
    #[arg(long)]
    run: PathBuf,
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    lr: f64,
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerKind,
    /// How the learning rate falls over the epochs.
    #[arg(long, value_enum, default_value = "step")]
    schedule: Schedule,
    #[arg(long, default_value_t = TrainOptions::default().weight_decay)]
    weight_decay: f64,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Training crop side: 96 for whole patches, 64 for random crops around the labelled centre.
    #[arg(long, default_value_t = TrainOptions::default().crop)]
    crop: usize,
    /// Start a new run from these weights (fine-tuning).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Use only the first N training patches of a random permutation (quick experiments).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Seconds between mid-epoch checkpoints.
    #[arg(long, default_value_t = TrainOptions::default().checkpoint_secs)]
    checkpoint_secs: u64,
    /// Colour jitter: per-channel gain 1 ± F and offset ± F/2 on each training patch.
    #[arg(long, default_value_t = TrainOptions::default().colour_jitter)]
    colour_jitter: f32,
    /// Stain jitter: each training patch's haematoxylin, eosin and DAB densities scaled by
    /// 1 ± F and shifted by ± F/4 (the stain-shift benchmark's severity 2 scales by 1 ± 0.3
    /// and shifts by ± 0.15).
    #[arg(long, default_value_t = TrainOptions::default().stain_jitter)]
    stain_jitter: f32,
    /// With --crop below the patch size: batches of whole training patches that re-estimate
    /// the batch-norm statistics before each validation (0 = off).
    #[arg(long, default_value_t = TrainOptions::default().bn_batches)]
    bn_batches: usize,
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendChoice,
}

impl Args {
    fn options(&self) -> TrainOptions {
        TrainOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            optimizer: self.optimizer,
            weight_decay: self.weight_decay,
            seed: self.seed,
            crop: self.crop,
            checkpoint_secs: self.checkpoint_secs,
            colour_jitter: self.colour_jitter,
            stain_jitter: self.stain_jitter,
            bn_batches: self.bn_batches,
            schedule: self.schedule,
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let device = args.backend.device()?;
    let start = Instant::now();
    let mut train_set = load_split(&args.data, "train")?;
    let valid_set = load_split(&args.data, "valid")?.half(Half::Selection);
    if let Some(limit) = args.train_limit {
        train_set = train_set.random_subset(limit, args.seed);
    }
    eprintln!(
        "loaded {} training patches {:?} and {} validation patches {:?} (selection half) in {:.1} s",
        train_set.len(),
        train_set.class_counts(),
        valid_set.len(),
        valid_set.class_counts(),
        start.elapsed().as_secs_f64()
    );
    let init = match &args.init {
        Some(path) => Some(weights::load_file(path, &device)?),
        None => None,
    };
    let state = train(
        &train_set,
        &valid_set,
        args.options(),
        &args.run,
        &device,
        init,
    )?;
    if let (Some(best), Some(epoch)) = (state.best_valid_loss, state.best_epoch) {
        eprintln!(
            "best validation loss {best:.4} at epoch {epoch}; weights in {}",
            args.run.join("best.bpk").display()
        );
    }
    Ok(())
}
