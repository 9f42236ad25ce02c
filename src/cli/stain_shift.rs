//! `celnet stain-shift`: a copy of a labelled split with its stains shifted, to measure how a
//! network holds up on another lab's staining.

use std::path::PathBuf;

use celnet::Result;
use celnet::train::data::{Half, load_folder_or_split};
use celnet::train::stain::StainJitter;

#[derive(clap::Args)]
pub struct Args {
    /// A split folder (DIR/0, DIR/1), or a data root whose valid split is used.
    #[arg(long)]
    from: PathBuf,
    /// Output folder: OUT/0 and OUT/1 receive PNG copies.
    #[arg(long)]
    out: PathBuf,
    /// 0 (none, a lossless copy) to 3 (strong): each patch's haematoxylin, eosin and DAB
    /// densities scaled by 1 ± 0.15/0.3/0.5 and shifted by half of that.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    severity: u8,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only this half of the split (a fixed rule on file names; copies keep the names, so
    /// a copy of the whole split splits the same way).
    #[arg(long, value_enum)]
    half: Option<Half>,
}

pub fn run(args: Args) -> Result<()> {
    let jitter = StainJitter::SEVERITIES[usize::from(args.severity)];
    let mut set = load_folder_or_split(&args.from, "valid")?;
    if let Some(half) = args.half {
        set = set.half(half);
    }
    let written = set
        .stain_shifted(jitter, args.seed)
        .write_folder(&args.out)?;
    println!(
        "{written} patches of {} at stain-shift severity {} (seed {}): {}",
        args.from.display(),
        args.severity,
        args.seed,
        args.out.display()
    );
    Ok(())
}
