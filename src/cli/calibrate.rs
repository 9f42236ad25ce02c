//! `celnet calibrate`: temperature scaling (or, with `--shift`, Platt scaling) fitted on the
//! selection half of a labelled split and judged on its report half ([`Half`]); the fitted map
//! of the logit is folded into the written weights.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use celnet::metrics::Confusion;
use celnet::network::classifier::{DECISION_THRESHOLD, sigmoid};
use celnet::train::calibration::{
    ECE_BINS, ReliabilityBin, expected_calibration_error, fit_platt, fit_temperature, nll,
    reliability,
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
    /// Fit a shift of the logit as well as its scale (Platt scaling), which moves decisions:
    /// for weights fine-tuned on unbalanced classes, such as hard examples repeated.
    #[arg(long)]
    shift: bool,
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
    /// `1 / scale` of the fitted map `scale · logit + shift`.
    temperature: f64,
    /// 0 unless `--shift`.
    shift: f64,
    fitted_on: usize,
    held_out: usize,
    /// On the report half, as are accuracy and AUC (which scaling does not change; a shift
    /// changes accuracy).
    before: Calibration,
    after: Calibration,
    accuracy_before: f64,
    accuracy: f64,
    auc: f64,
    weights_out: String,
    diagram_png: String,
}

impl PrintReport for CalibrateReport {
    fn print_text(&self) {
        let map = if self.shift == 0.0 {
            format!("temperature {:.4}", self.temperature)
        } else {
            format!("logit / {:.4} {:+.4} (Platt)", self.temperature, self.shift)
        };
        println!(
            "{map} fitted on the {} patches of the selection half; on the {} of the report half: ECE {:.4} -> {:.4}, NLL {:.4} -> {:.4}, accuracy {:.4} -> {:.4} (AUC {:.4} unchanged)",
            self.fitted_on,
            self.held_out,
            self.before.ece,
            self.after.ece,
            self.before.nll,
            self.after.nll,
            self.accuracy_before,
            self.accuracy,
            self.auc
        );
        println!("weights: {}", self.weights_out);
        println!("reliability diagram: {}", self.diagram_png);
    }
}

/// `sigmoid(scale · logit + shift)` of each logit.
fn mapped_probabilities(logits: &[f32], (scale, shift): (f64, f64)) -> Vec<f32> {
    logits
        .iter()
        .map(|&z| sigmoid((scale * f64::from(z) + shift) as f32))
        .collect()
}

/// Calibration of `sigmoid(scale · logit + shift)`.
fn calibration(logits: &[f32], labels: &[u8], (scale, shift): (f64, f64)) -> Calibration {
    let mapped: Vec<f32> = logits
        .iter()
        .map(|&z| (scale * f64::from(z) + shift) as f32)
        .collect();
    let probabilities = mapped_probabilities(logits, (scale, shift));
    Calibration {
        ece: expected_calibration_error(&probabilities, labels),
        nll: nll(&mapped, labels, 1.0),
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
    let map = if args.shift {
        fit_platt(&fit.logits, &selection.labels)
    } else {
        (1.0 / fit_temperature(&fit.logits, &selection.labels), 0.0)
    };
    let (logits, labels) = (&judged.logits, &report.labels);

    let before = calibration(logits, labels, (1.0, 0.0));
    let after = calibration(logits, labels, map);
    let temperature = 1.0 / map.0;
    let label = if args.shift {
        format!("after, z / {temperature:.2} {:+.2}", map.1)
    } else {
        format!("after, T = {temperature:.2}")
    };
    plot::reliability_diagram(
        &[
            ("before", &before.bins, before.ece),
            (&label, &after.bins, after.ece),
        ],
        &args.diagram,
    )?;
    weights::save_file(
        loaded
            .model
            .clone()
            .with_logit_map(map.0 as f32, map.1 as f32),
        &args.out,
    )?;
    let report = CalibrateReport {
        temperature,
        shift: map.1,
        fitted_on: fit.n,
        held_out: judged.n,
        before,
        after,
        accuracy_before: judged.accuracy,
        accuracy: Confusion::at(
            &mapped_probabilities(logits, map),
            labels,
            DECISION_THRESHOLD,
        )
        .accuracy(),
        auc: judged.auc,
        weights_out: args.out.display().to_string(),
        diagram_png: args.diagram.display().to_string(),
    };
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
}
