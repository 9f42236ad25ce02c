//! `celnet mosaic`: glimpses with exact tumour masks, from PCam centre crops.

use std::path::PathBuf;

use celnet::Result;
use celnet::studies::glimpse_mosaic::{self, MosaicOptions};
use celnet::train::data::Half;

#[derive(clap::Args)]
pub struct Args {
    /// PCam split folder (SPLIT/0, SPLIT/1).
    #[arg(long)]
    from: PathBuf,
    /// Output folder (NNNNN.png, NNNNN_mask.png, manifest.json).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = MosaicOptions::default().n)]
    n: usize,
    #[arg(long, default_value_t = MosaicOptions::default().seed)]
    seed: u64,
    /// Share of glimpses without any tumour tile.
    #[arg(long, default_value_t = MosaicOptions::default().normal_share)]
    normal_share: f64,
    /// Tumour glimpses get 1 to this many tumour tiles.
    #[arg(long, default_value_t = MosaicOptions::default().max_tumour_tiles)]
    max_tumour_tiles: usize,
    /// Use part K of N of each class's files (e.g. 1/2 to tune, 2/2 to test).
    #[arg(long, default_value = "1/1", value_parser = glimpse_mosaic::parse_part)]
    part: (usize, usize),
    /// Only this half of the split (a fixed rule on file names): build tuning sets from
    /// `selection`, test sets from `report`.
    #[arg(long, value_enum)]
    half: Option<Half>,
}

pub fn run(args: Args) -> Result<()> {
    let options = MosaicOptions {
        n: args.n,
        seed: args.seed,
        normal_share: args.normal_share,
        max_tumour_tiles: args.max_tumour_tiles,
        part: args.part,
        half: args.half,
    };
    let manifest = glimpse_mosaic::build(&args.from, &args.out, &options)?;
    let tumour = manifest
        .glimpses
        .iter()
        .filter(|g| !g.tumour_tiles.is_empty())
        .count();
    println!(
        "{} mosaics ({tumour} with tumour) from {} part {}/{} in {}",
        manifest.glimpses.len(),
        args.from.display(),
        options.part.0,
        options.part.1,
        args.out.display()
    );
    Ok(())
}
