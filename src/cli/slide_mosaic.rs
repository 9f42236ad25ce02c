//! `celnet slide-mosaic`: synthetic slides with known lesions from whole PCam patches.

use std::path::PathBuf;

use celnet::Result;
use celnet::studies::glimpse_mosaic::parse_part;
use celnet::studies::slide_mosaic::{LesionSizes, SlideMosaicOptions, build};
use celnet::train::data::Half;

#[derive(clap::Args)]
pub struct Args {
    /// PCam split folder (SPLIT/0, SPLIT/1).
    #[arg(long)]
    from: PathBuf,
    /// Output folder (slide-NNN.png, slide-NNN_mask.png, manifest.json).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = SlideMosaicOptions::default().n)]
    n: usize,
    #[arg(long, default_value_t = SlideMosaicOptions::default().seed)]
    seed: u64,
    /// Patches per side of a slide.
    #[arg(long, default_value_t = SlideMosaicOptions::default().grid)]
    grid: usize,
    /// Share of slides with lesions.
    #[arg(long, default_value_t = SlideMosaicOptions::default().tumour_share)]
    tumour_share: f64,
    /// Use part K of N of each class's files (e.g. 1/2 to tune, 2/2 to test).
    #[arg(long, default_value = "1/1", value_parser = parse_part)]
    part: (usize, usize),
    /// Only this half of the split (a fixed rule on file names): build tuning sets from
    /// `selection`, test sets from `report`.
    #[arg(long, value_enum)]
    half: Option<Half>,
    /// `staged`: lesions of all three stages (isolated tumour cells, micro- and
    /// macrometastases; a grid of 24 or more); `small`: blobs of one to four patches.
    #[arg(long, value_enum, default_value = "staged")]
    lesion_sizes: LesionSizes,
}

pub fn run(args: Args) -> Result<()> {
    let options = SlideMosaicOptions {
        n: args.n,
        seed: args.seed,
        grid: args.grid,
        tumour_share: args.tumour_share,
        part: args.part,
        half: args.half,
        lesion_sizes: args.lesion_sizes,
        ..SlideMosaicOptions::default()
    };
    let manifest = build(&args.from, &args.out, &options)?;
    let lesions: usize = manifest.slides.iter().map(|s| s.lesions.len()).sum();
    let tumour = manifest
        .slides
        .iter()
        .filter(|s| !s.lesions.is_empty())
        .count();
    println!(
        "{} slides ({tumour} with {lesions} lesions in all) of {g}x{g} patches in {}",
        manifest.slides.len(),
        args.out.display(),
        g = options.grid
    );
    Ok(())
}
