//! `celnet slide-fit`: fits the slide model (lesion thresholds, coefficients, calibration) on
//! saved heatmaps of synthetic slides.

use std::path::PathBuf;

use celnet::studies::slide_fit::{FitGrid, ScoredFolder, SlideFit, fit_slide_model};
use celnet::{CelnetError, Result};

use super::slide_eval::read_scored;

#[derive(clap::Args)]
pub struct Args {
    /// Slides built from the training split (`celnet slide-mosaic --from $PCAM/train`): the
    /// coefficients are fitted on them.
    #[arg(long)]
    train: PathBuf,
    /// Their heatmaps (`celnet slide-eval --save`).
    #[arg(long)]
    train_scored: PathBuf,
    /// Slides from the validation split's selection half: thresholds, penalty and calibration
    /// are chosen on them.
    #[arg(long)]
    selection: PathBuf,
    #[arg(long)]
    selection_scored: PathBuf,
    /// The network weights' name, written into the model.
    #[arg(long, default_value = "embedded default")]
    weights_name: String,
    /// Where to write the chosen model (JSON).
    #[arg(long, short)]
    out: PathBuf,
    /// Print every candidate as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let train = read_scored(&args.train_scored)?;
    let selection = read_scored(&args.selection_scored)?;
    let SlideFit {
        model,
        chosen,
        candidates,
    } = fit_slide_model(
        &ScoredFolder {
            dir: &args.train,
            scored: &train,
        },
        &ScoredFolder {
            dir: &args.selection,
            scored: &selection,
        },
        &FitGrid::default(),
        &args.weights_name,
    )?;
    let text = serde_json::to_string_pretty(&model).expect("the model serialises") + "\n";
    std::fs::write(&args.out, text).map_err(|e| CelnetError::io(&args.out, e))?;
    if args.json {
        let all = serde_json::json!({ "chosen": chosen, "candidates": candidates });
        println!("{all}");
    } else {
        println!("seed  grow  l2     AUC    category  FROC   lesions/normal  ECE");
        for c in &candidates {
            println!(
                "{:.3} {:.2}  {:<5}  {}  {:.3}     {:.3}  {:.2}            {:.3}",
                c.hysteresis.seed,
                c.hysteresis.grow,
                c.l2,
                c.auc.map_or("-    ".into(), |a| format!("{a:.3}")),
                c.category_accuracy,
                c.froc_lesions,
                c.false_lesions_per_normal_slide,
                c.ece
            );
        }
        println!(
            "chosen: seed {} grow {} l2 {} -> {}",
            chosen.hysteresis.seed,
            chosen.hysteresis.grow,
            chosen.l2,
            args.out.display()
        );
    }
    Ok(())
}
