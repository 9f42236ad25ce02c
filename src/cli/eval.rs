//! `celnet eval`: accuracy, AUC, confusion matrix and ROC curve on a labelled split folder, or
//! on one half of it.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use celnet::Result;
use celnet::metrics::roc_curve;
use celnet::train::data::{Half, PatchSet};
use celnet::train::evaluation::{Evaluation, evaluate_patches};
use celnet::train::plot;

use super::common::{ModelArgs, PrintReport, TtaArgs, emit};

#[derive(clap::Args)]
pub struct Args {
    dir: PathBuf,
    /// Only this half of the split (a fixed rule on file names): choose on `selection`,
    /// report on `report`.
    #[arg(long, value_enum)]
    half: Option<Half>,
    #[arg(long)]
    json: bool,
    /// Where to write the ROC curve.
    #[arg(long, default_value = "roc.png")]
    roc: PathBuf,
    #[command(flatten)]
    tta: TtaArgs,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Serialize)]
struct EvalReport {
    half: Option<Half>,
    #[serde(flatten)]
    evaluation: Evaluation,
    roc_png: String,
}

impl PrintReport for EvalReport {
    fn print_text(&self) {
        let e = &self.evaluation;
        let c = &e.confusion;
        let of = self
            .half
            .map_or(String::new(), |h| format!(" of the {h} half"));
        println!(
            "{} patches{of}: accuracy {:.4}, AUC {:.4}, loss {:.4}, ECE {:.4}, sensitivity {:.4}, specificity {:.4}",
            e.n, e.accuracy, e.auc, e.loss, e.ece, e.sensitivity, e.specificity
        );
        println!(
            "confusion (rows = truth 0/1, columns = predicted 0/1): [[{}, {}], [{}, {}]]",
            c.true_negative, c.false_positive, c.false_negative, c.true_positive
        );
        println!("ROC curve: {}", self.roc_png);
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = args.model.load()?;
    let mut set = PatchSet::from_folder(&args.dir)?;
    if let Some(half) = args.half {
        set = set.half(half);
    }
    let start = Instant::now();
    let classifier = loaded.classifier().with_tta(args.tta.tta());
    let evaluation = evaluate_patches(&classifier, &set, 128)?;
    let curve = roc_curve(&evaluation.probabilities, &set.labels);
    plot::roc_curve(&curve, evaluation.auc, &args.roc)?;
    let report = EvalReport {
        half: args.half,
        evaluation,
        roc_png: args.roc.display().to_string(),
    };
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
}
