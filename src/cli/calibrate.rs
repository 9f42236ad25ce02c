//! `celnet calibrate`: temperature scaling fitted on the selection half of a labelled split and
//! judged on its report half ([`Half`]); the temperature is folded into the written weights.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use celnet::network::classifier::sigmoid;
use celnet::train::calibration::{
    ECE_BINS, ReliabilityBin, expected_calibration_error, fit_temperature, nll, reliability,
};
use celnet::train::data::{Half, load_folder_or_split};
use celnet::train::evaluation::evaluate_patches;
use celnet::train::plot;
use celnet::{Result, weights};

use super::common::{ModelArgs, PrintReport, TtaArgs, emit};

#[derive(clap::Args)]
pub struct Args {
    /// A split folder (DIR/0, DIR/1), or a data root whose valid split is used.
    #[arg(long)]
    data: PathBuf,
    /// Output weights file: the input weights with the temperature folded into the classifier.
    #[arg(short, long)]
    out: PathBuf,
    /// Where to draw the reliability diagram of the held-out half, before and after.
    #[arg(long, default_value = "reliability.png")]
    diagram: PathBuf,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tta: TtaArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// ECE, NLL and the diagram's bins of one set of probabilities.
#[derive(Serialize)]
struct Calibration {
    ece: f64,
    nll: f64,
    bins: Vec<ReliabilityBin>,
}

#[derive(Serialize)]
struct CalibrateReport {
    temperature: f64,
    fitted_on: usize,
    held_out: usize,
    /// On the report half, as are accuracy and AUC (which scaling does not change).
    before: Calibration,
    after: Calibration,
    accuracy: f64,
    auc: f64,
    weights_out: String,
    diagram_png: String,
}

impl PrintReport for CalibrateReport {
    fn print_text(&self) {
        println!(
            "temperature {:.4} fitted on the {} patches of the selection half; on the {} of the report half: ECE {:.4} -> {:.4}, NLL {:.4} -> {:.4} (accuracy {:.4} and AUC {:.4} unchanged)",
            self.temperature,
            self.fitted_on,
            self.held_out,
            self.before.ece,
            self.after.ece,
            self.before.nll,
            self.after.nll,
            self.accuracy,
            self.auc
        );
        println!("weights: {}", self.weights_out);
        println!("reliability diagram: {}", self.diagram_png);
    }
}

fn calibration(logits: &[f32], labels: &[u8], temperature: f64) -> Calibration {
    let probabilities: Vec<f32> = logits
        .iter()
        .map(|&z| sigmoid((f64::from(z) / temperature) as f32))
        .collect();
    Calibration {
        ece: expected_calibration_error(&probabilities, labels),
        nll: nll(logits, labels, temperature),
        bins: reliability(&probabilities, labels, ECE_BINS),
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = args.model.load()?;
    let set = load_folder_or_split(&args.data, "valid")?;
    let start = Instant::now();
    let classifier = loaded.classifier().with_tta(args.tta.tta());
    let (selection, report) = (set.half(Half::Selection), set.half(Half::Report));
    let fit = evaluate_patches(&classifier, &selection, 128)?;
    let judged = evaluate_patches(&classifier, &report, 128)?;
    let temperature = fit_temperature(&fit.logits, &selection.labels);
    let (logits, labels) = (&judged.logits, &report.labels);

    let before = calibration(logits, labels, 1.0);
    let after = calibration(logits, labels, temperature);
    plot::reliability_diagram(
        &[
            ("before", &before.bins, before.ece),
            (
                &format!("after, T = {temperature:.2}"),
                &after.bins,
                after.ece,
            ),
        ],
        &args.diagram,
    )?;
    weights::save_file(
        loaded.model.clone().with_temperature(temperature as f32),
        &args.out,
    )?;
    let report = CalibrateReport {
        temperature,
        fitted_on: fit.n,
        held_out: judged.n,
        before,
        after,
        accuracy: judged.accuracy,
        auc: judged.auc,
        weights_out: args.out.display().to_string(),
        diagram_png: args.diagram.display().to_string(),
    };
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
}
