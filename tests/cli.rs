//! The `celnet` binary end to end, with the embedded default weights and the shipped fixtures.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{FIXTURES, assert_success, celnet, json_stdout, scratch};

fn first_fixture(label: u8) -> PathBuf {
    let dir = Path::new(FIXTURES).join(label.to_string());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.remove(0)
}

#[test]
fn info_reports_the_paper_architecture() {
    let info = json_stdout(&celnet(&["info", "--json"]));
    let params = info["params"].as_u64().unwrap();
    assert_eq!(params, 302_055);
    assert!((params as f64 - 297_000.0).abs() / 297_000.0 < 0.02);
    assert_eq!(info["f2_shape"], serde_json::json!([1, 32, 48, 48]));
    assert_eq!(info["f3_shape"], serde_json::json!([1, 64, 24, 24]));
}

#[test]
fn predict_gives_probabilities_per_file() {
    let files = [first_fixture(0), first_fixture(1)];
    let output = celnet(&[
        "predict",
        "--json",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
    ]);
    assert!(output.status.success());
    // JSON Lines: one object per file, whatever the number of files.
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for r in &lines {
        assert_eq!(r["backend"], "flex");
        let label = if r["probability"].as_f64().unwrap() >= 0.5 {
            "metastasis"
        } else {
            "normal"
        };
        assert_eq!(r["label"], label);
        assert!(r["timings_ms"]["network"].as_f64().unwrap() > 0.0);
        let p = r["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        let logit = r["logit"].as_f64().unwrap();
        assert!((1.0 / (1.0 + (-logit).exp()) - p).abs() < 1e-6);
    }
}

#[test]
fn predict_reports_a_bad_file_and_fails() {
    let dir = scratch("predict-bad");
    let bad = dir.join("notes.png");
    std::fs::write(&bad, "not an image").unwrap();
    let output = celnet(&["predict", "--json", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("cannot read the image"), "{error}");
    assert!(
        error.contains("notes.png"),
        "the error names the file: {error}"
    );
}

#[test]
fn explain_writes_maps_overlay_and_json() {
    let dir = scratch("explain");
    let image = first_fixture(1);
    let output = celnet(&[
        "explain",
        image.to_str().unwrap(),
        "-o",
        dir.to_str().unwrap(),
        "--alpha",
        "0.7",
        "--threshold",
        "0.4",
    ]);
    assert_success(&output);
    for name in [
        "input", "cam2", "cam3", "csm", "mc", "celm", "mask", "overlay",
    ] {
        let png = image::open(dir.join(format!("{name}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (96, 96), "{name}");
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("explain.json")).unwrap()).unwrap();
    let p = report["probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    assert!(report["logit"].is_number());
    assert!((report["params"]["alpha"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert!((report["params"]["threshold"].as_f64().unwrap() - 0.4).abs() < 1e-6);
    assert!(report["regions"].is_array());
    for key in ["model_load", "decode", "network", "fusion", "total"] {
        assert!(report["timings_ms"][key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert_eq!(report["weights"], "embedded default (v6)");

    // The same logit as predict on the same file.
    let predicted = json_stdout(&celnet(&["predict", "--json", image.to_str().unwrap()]));
    let diff = (predicted["logit"].as_f64().unwrap() - report["logit"].as_f64().unwrap()).abs();
    assert!(diff < 1e-4, "explain and predict disagree by {diff}");
}

#[test]
fn explain_refuses_bad_parameters() {
    let dir = scratch("explain-bad");
    let image = first_fixture(0);
    let output = celnet(&[
        "explain",
        image.to_str().unwrap(),
        "-o",
        dir.to_str().unwrap(),
        "--beta",
        "2",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("beta must be in [0, 1]"));
}

#[test]
fn eval_on_fixtures_meets_the_floor() {
    let dir = scratch("eval");
    let roc = dir.join("roc.png");
    let report = json_stdout(&celnet(&[
        "eval",
        FIXTURES,
        "--json",
        "--roc",
        roc.to_str().unwrap(),
    ]));
    assert_eq!(report["n"], 200);
    let accuracy = report["accuracy"].as_f64().unwrap();
    let auc = report["auc"].as_f64().unwrap();
    // The shipped weights on 200 held-out validation patches (the model card has the full
    // 3,000-patch numbers); a broken model or preprocessing lands near 0.5.
    assert!(accuracy >= 0.8, "accuracy {accuracy}");
    assert!(auc >= 0.88, "auc {auc}");
    let ece = report["ece"].as_f64().unwrap();
    assert!((0.0..0.5).contains(&ece), "ece {ece}");
    assert!(image::open(&roc).is_ok());

    // The eight orientations: a different, equally good set of scores.
    let tta = json_stdout(&celnet(&[
        "eval",
        FIXTURES,
        "--json",
        "--tta",
        "--roc",
        roc.to_str().unwrap(),
    ]));
    assert_eq!(tta["n"], 200);
    assert_ne!(tta["loss"], report["loss"]);
    assert!(tta["accuracy"].as_f64().unwrap() >= 0.8, "{tta}");

    // One half (counted with `sha256sum`, see the calibrate test): its own patches only.
    let half = json_stdout(&celnet(&[
        "eval",
        FIXTURES,
        "--half",
        "report",
        "--json",
        "--roc",
        roc.to_str().unwrap(),
    ]));
    assert_eq!(half["n"], 98);
    assert_eq!(half["half"], "report");
}

#[test]
fn calibrate_folds_a_temperature_that_changes_probabilities_not_decisions() {
    let dir = scratch("calibrate");
    let out = dir.join("calibrated.bpk");
    let diagram = dir.join("reliability.png");
    let report = json_stdout(&celnet(&[
        "calibrate",
        "--data",
        FIXTURES,
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--diagram",
        diagram.to_str().unwrap(),
    ]));
    let temperature = report["temperature"].as_f64().unwrap();
    assert!(temperature > 0.1 && temperature < 10.0, "{report}");
    // The fixture's halves by the SHA-256 rule, counted with `sha256sum`: 102 selection, 98
    // report.
    assert_eq!(report["fitted_on"], 102);
    assert_eq!(report["held_out"], 98);
    assert_eq!(report["before"]["bins"].as_array().unwrap().len(), 15);
    assert!(image::open(&diagram).is_ok());

    // The written weights score with the temperature: logits divided by it, same labels.
    let files = [first_fixture(0), first_fixture(1)];
    let predict = |weights: Option<&Path>| -> Vec<Value> {
        let mut args = vec!["predict", "--json"];
        if let Some(weights) = weights {
            args.extend(["--weights", weights.to_str().unwrap()]);
        }
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        String::from_utf8(celnet(&args).stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    for (plain, calibrated) in predict(None).iter().zip(predict(Some(&out))) {
        let (z, zt) = (
            plain["logit"].as_f64().unwrap(),
            calibrated["logit"].as_f64().unwrap(),
        );
        assert!(
            (z / temperature - zt).abs() < 1e-3,
            "{z} / {temperature} vs {zt}"
        );
        assert_eq!(plain["label"], calibrated["label"]);
    }
}

#[test]
fn calibrate_with_a_shift_folds_platt_scaling_into_the_weights() {
    let dir = scratch("calibrate-shift");
    let out = dir.join("platt.bpk");
    let report = json_stdout(&celnet(&[
        "calibrate",
        "--data",
        FIXTURES,
        "--shift",
        "--json",
        "-o",
        out.to_str().unwrap(),
        "--diagram",
        dir.join("reliability.png").to_str().unwrap(),
    ]));
    let (temperature, shift) = (
        report["temperature"].as_f64().unwrap(),
        report["shift"].as_f64().unwrap(),
    );
    assert!(shift != 0.0, "{report}");
    // The written weights' logits are the map of the shipped ones.
    let file = first_fixture(1);
    let logit = |weights: Option<&Path>| -> f64 {
        let mut args = vec!["predict", "--json", file.to_str().unwrap()];
        if let Some(weights) = weights {
            args.extend(["--weights", weights.to_str().unwrap()]);
        }
        json_stdout(&celnet(&args))["logit"].as_f64().unwrap()
    };
    let (z, mapped) = (logit(None), logit(Some(&out)));
    assert!(
        (z / temperature + shift - mapped).abs() < 1e-3,
        "{z} / {temperature} + {shift} vs {mapped}"
    );
    // The report half's accuracy the report gives is what `eval` measures with those weights.
    let eval = json_stdout(&celnet(&[
        "eval",
        FIXTURES,
        "--half",
        "report",
        "--weights",
        out.to_str().unwrap(),
        "--roc",
        dir.join("roc.png").to_str().unwrap(),
        "--json",
    ]));
    assert!(
        (eval["accuracy"].as_f64().unwrap() - report["accuracy"].as_f64().unwrap()).abs() < 1e-9,
        "{eval} vs {report}"
    );
}

#[test]
fn stain_shift_writes_a_labelled_copy_that_eval_reads() {
    let dir = scratch("stain-shift");
    for severity in ["0", "2"] {
        let out = dir.join(severity);
        let output = celnet(&[
            "stain-shift",
            "--from",
            FIXTURES,
            "--out",
            out.to_str().unwrap(),
            "--severity",
            severity,
            "--seed",
            "3",
        ]);
        assert_success(&output);
        let count = |label: &str| std::fs::read_dir(out.join(label)).unwrap().count();
        assert_eq!((count("0"), count("1")), (100, 100));
    }
    // Severity 0 is a lossless copy; severity 2 changes colours.
    let original = celnet::input::read_image(&first_fixture(1)).unwrap();
    let name = first_fixture(1).file_stem().unwrap().to_owned();
    let copy = |severity: &str| {
        let mut path = dir.join(severity).join("1").join(name.clone());
        path.set_extension("png");
        image::open(path).unwrap().to_rgb8()
    };
    assert_eq!(copy("0"), original);
    assert_ne!(copy("2"), original);
    // A copy splits into the same halves as its source (the PNG copies keep the names).
    let output = celnet(&[
        "stain-shift",
        "--from",
        dir.join("0").to_str().unwrap(),
        "--out",
        dir.join("selection").to_str().unwrap(),
        "--severity",
        "0",
        "--half",
        "selection",
    ]);
    assert_success(&output);
    let count = |label: &str| {
        std::fs::read_dir(dir.join("selection").join(label))
            .unwrap()
            .count()
    };
    assert_eq!(count("0") + count("1"), 102);

    let output = celnet(&[
        "stain-shift",
        "--from",
        FIXTURES,
        "--out",
        "x",
        "--severity",
        "4",
    ]);
    assert!(!output.status.success());
}

#[test]
fn missing_weights_file_is_a_clear_error() {
    let output = celnet(&["info", "--weights", "/nonexistent/weights.bpk"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/weights.bpk"), "{stderr}");
}

#[test]
fn recalibrate_rewrites_only_statistics_into_a_working_model() {
    let dir = scratch("recalibrate");
    let out = dir.join("recalibrated.bpk");
    let recalibrate = |batches: &str| {
        celnet(&[
            "recalibrate",
            "weights/celnet-pcam.bpk",
            "--data",
            FIXTURES,
            "--batches",
            batches,
            "--batch-size",
            "8",
            "-o",
            out.to_str().unwrap(),
        ])
    };
    let output = recalibrate("4");
    assert_success(&output);
    let before = std::fs::read("weights/celnet-pcam.bpk").unwrap();
    let after = std::fs::read(&out).unwrap();
    assert_eq!(before.len(), after.len(), "same tensors, same layout");
    assert_ne!(before, after, "the running statistics changed");
    let report = json_stdout(&celnet(&[
        "eval",
        FIXTURES,
        "--json",
        "--roc",
        dir.join("roc.png").to_str().unwrap(),
        "--weights",
        out.to_str().unwrap(),
    ]));
    // 32 patches of statistics are noisier than the shipped 4,096, but the model still works.
    assert!(report["accuracy"].as_f64().unwrap() >= 0.75, "{report}");

    let output = recalibrate("0");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("batch-norm recalibration"));
}
