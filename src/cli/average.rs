//! `celnet average`: the mean of several networks' weights.

use std::path::PathBuf;

use burn::prelude::*;

use celnet::train::average_weights;
use celnet::{Result, weights};

#[derive(clap::Args)]
pub struct Args {
    /// Burnpack weight files from one training run.
    #[arg(required = true, num_args = 2..)]
    weights: Vec<PathBuf>,
    /// Output weights file.
    #[arg(short, long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let device = Device::flex();
    let models = args
        .weights
        .iter()
        .map(|f| weights::load_file(f, &device))
        .collect::<Result<Vec<_>>>()?;
    weights::save_file(average_weights(models)?, &args.out)?;
    println!(
        "averaged {} networks into {}",
        args.weights.len(),
        args.out.display()
    );
    Ok(())
}
