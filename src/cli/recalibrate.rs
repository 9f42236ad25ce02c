//! `celnet recalibrate`: batch-norm statistics re-estimated on whole training patches.

use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;

use celnet::train::data::load_folder_or_split;
use celnet::train::recalibrate_batch_norm;
use celnet::{Result, weights};

#[derive(clap::Args)]
pub struct Args {
    /// Burnpack weights to start from.
    weights: PathBuf,
    /// A split folder (DIR/0, DIR/1), or a data root (as for `train`) whose train split is used.
    #[arg(long)]
    data: PathBuf,
    /// Batches of whole patches to run through the network.
    #[arg(long, default_value_t = 64)]
    batches: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output weights file.
    #[arg(short, long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let device = Device::flex();
    let model = weights::load_file(&args.weights, &device)?;
    let set = load_folder_or_split(&args.data, "train")?;
    let start = Instant::now();
    let model = recalibrate_batch_norm(
        model,
        &set,
        args.batches,
        args.batch_size,
        args.seed,
        &device,
    )?;
    weights::save_file(model, &args.out)?;
    println!(
        "batch-norm statistics from {} patches of {} in {:.0} s: {}",
        args.batches * args.batch_size,
        args.data.display(),
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
