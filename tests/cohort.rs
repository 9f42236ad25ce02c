//! `celnet heatmap` as a batch job (same bytes from the same input, exit statuses that say whose
//! fault a failure is, outputs that appear whole) and `celnet cohort` over its results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{assert_success, celnet, scratch};

const FIELD: &str = "tests/fixtures/slide/field-of-view.png";
const LESIONS: &str = "tests/fixtures/slide/lesions.png";

fn heatmap(input: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "heatmap",
        input,
        "-o",
        out.to_str().unwrap(),
        "--top-k",
        "1",
    ];
    args.extend(extra);
    celnet(&args)
}

/// Every file of a folder, by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// A summary without the fields that measure the run rather than the slide.
fn without_timings(summary: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(summary).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("seconds");
    let scoring = object["scoring"].as_object_mut().unwrap();
    for timing in ["seconds", "windows_per_second", "peak_memory_mb"] {
        assert!(
            scoring.remove(timing).is_some(),
            "scoring.{timing} is missing"
        );
    }
    value
}

#[test]
fn heatmap_writes_the_same_bytes_for_the_same_input_whatever_the_threads() {
    let dir = scratch("cohort-deterministic");
    let runs: Vec<PathBuf> = ["1", "1", "2"]
        .iter()
        .enumerate()
        .map(|(i, threads)| {
            let out = dir.join(format!("run-{i}"));
            let output = celnet(&[
                "--threads",
                threads,
                "heatmap",
                LESIONS,
                "-o",
                out.to_str().unwrap(),
                "--top-k",
                "2",
            ]);
            assert_success(&output);
            out
        })
        .collect();
    let first = files(&runs[0]);
    assert!(first.contains_key("evidence-2.png"), "{:?}", first.keys());
    for run in &runs[1..] {
        let other = files(run);
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            other.keys().collect::<Vec<_>>()
        );
        for (name, bytes) in &first {
            if name == "summary.json" {
                assert_eq!(without_timings(bytes), without_timings(&other[name]));
            } else {
                assert!(bytes == &other[name], "{name} differs between runs");
            }
        }
    }
}

#[test]
fn exit_statuses_tell_a_bad_input_from_a_missing_one() {
    let dir = scratch("cohort-exit");
    let corrupt = dir.join("corrupt.svs");
    std::fs::write(&corrupt, b"II*\0 not really a slide").unwrap();
    let bad = heatmap(corrupt.to_str().unwrap(), &dir.join("bad"), &[]);
    assert_eq!(
        bad.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let missing = heatmap(
        dir.join("absent.svs").to_str().unwrap(),
        &dir.join("missing"),
        &[],
    );
    assert_eq!(
        missing.status.code(),
        Some(66),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    // A large image without a pixel size is the input's fault too.
    let unknown = dir.join("no-pixel-size.png");
    image::RgbImage::from_pixel(400, 400, image::Rgb([200, 120, 180]))
        .save(&unknown)
        .unwrap();
    let refused = heatmap(unknown.to_str().unwrap(), &dir.join("refused"), &[]);
    assert_eq!(refused.status.code(), Some(65));
    // A usage error is clap's 2.
    assert_eq!(celnet(&["heatmap", FIELD]).status.code(), Some(2));
}

#[test]
fn heatmap_outputs_appear_whole_and_replace_an_earlier_run() {
    let dir = scratch("cohort-atomic");
    let out = dir.join("slide");
    assert_success(&heatmap(FIELD, &out, &[]));
    let complete = files(&out);
    // A rerun that fails on its input leaves the earlier run's outputs as they were.
    std::fs::write(dir.join("broken.png"), b"\x89PNG broken").unwrap();
    let failed = heatmap(dir.join("broken.png").to_str().unwrap(), &out, &[]);
    assert_eq!(failed.status.code(), Some(65));
    assert_eq!(files(&out), complete);
    // A staging folder left by a killed run is cleared by the next.
    std::fs::create_dir_all(out.join(".partial-999999")).unwrap();
    assert_success(&heatmap(FIELD, &out, &[]));
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert!(names.contains(&"summary.json".to_string()));
}

/// Reads `cohort.csv` as rows of column -> value.
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn cohort_merges_scored_and_failed_slides_with_their_labels() {
    let dir = scratch("cohort-merge");
    let slides = dir.join("slides");
    for (name, input) in [("field-of-view", FIELD), ("lesions", LESIONS)] {
        assert_success(&heatmap(input, &slides.join(name), &[]));
    }
    // A slide the workflow gave up on: only its status.
    let failed = slides.join("corrupt");
    std::fs::create_dir_all(&failed).unwrap();
    std::fs::write(
        failed.join("status.json"),
        r#"{"file": "in/corrupt.svs", "status": "failed", "error": "cannot read the image: not a TIFF", "exit_code": 65, "attempts": 1}"#,
    )
    .unwrap();
    // A slide still being scored: an empty folder.
    std::fs::create_dir_all(slides.join("unfinished")).unwrap();
    let labels = dir.join("labels.csv");
    std::fs::write(
        &labels,
        "path,label\nin/lesions.png,tumour\nin/field-of-view.png,normal\nin/corrupt.svs,1\n",
    )
    .unwrap();

    let out = dir.join("cohort");
    let output = celnet(&[
        "cohort",
        slides.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--json",
    ]);
    assert_success(&output);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (report["slides"].as_u64(), report["ok"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(
        (report["failed"].as_u64(), report["unfinished"].as_u64()),
        (Some(1), Some(1))
    );

    let rows = csv_rows(&out.join("cohort.csv"));
    let by_name: BTreeMap<&str, &BTreeMap<String, String>> =
        rows.iter().map(|r| (r["name"].as_str(), r)).collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        ["corrupt", "field-of-view", "lesions", "unfinished"]
    );
    assert_eq!(by_name["corrupt"]["status"], "failed");
    assert_eq!(
        by_name["corrupt"]["error"],
        "cannot read the image: not a TIFF"
    );
    assert_eq!(by_name["corrupt"]["exit_code"], "65");
    assert_eq!(by_name["unfinished"]["status"], "unfinished");
    // Each scored row holds its summary's slide-level fields.
    for name in ["field-of-view", "lesions"] {
        let row = by_name[name];
        let summary: Value =
            serde_json::from_slice(&std::fs::read(slides.join(name).join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(row["status"], "ok");
        assert_eq!(
            row["slide_score"].parse::<f64>().unwrap(),
            summary["slide_score"].as_f64().unwrap()
        );
        assert_eq!(
            row["slide_probability"].parse::<f64>().unwrap(),
            summary["slide_probability"].as_f64().unwrap()
        );
        assert_eq!(
            row["slide_category"],
            summary["slide_category"].as_str().unwrap()
        );
        assert_eq!(
            row["lesions"],
            summary["lesions"].as_array().unwrap().len().to_string()
        );
        assert_eq!(row["mpp_source"], summary["mpp_source"].as_str().unwrap());
        assert_eq!(
            row["scoring.tiles"],
            summary["scoring"]["tiles"].to_string()
        );
        assert_eq!(
            row["slide_scores.top5_mean"].parse::<f64>().unwrap(),
            summary["slide_scores"]["top5_mean"].as_f64().unwrap()
        );
        assert_eq!(
            row["grid"],
            format!("{} {}", summary["grid"][0], summary["grid"][1])
        );
        assert_eq!(row["backend"], "flex");
    }
    assert_eq!(by_name["lesions"]["label"], "1");
    assert_eq!(by_name["field-of-view"]["label"], "0");

    // Two scored labelled slides, one of each class: the AUC is 1 or 0 as their probabilities
    // order them; the failed labelled slide is counted but not measured.
    let measures = &report["measures"];
    assert_eq!(
        (measures["labelled"].as_u64(), measures["scored"].as_u64()),
        (Some(3), Some(2))
    );
    let probability = |name: &str| by_name[name]["slide_probability"].parse::<f64>().unwrap();
    let expected = if probability("lesions") > probability("field-of-view") {
        1.0
    } else {
        0.0
    };
    assert_eq!(measures["auc_probability"].as_f64(), Some(expected));
    let threshold = measures["threshold"].as_f64().unwrap();
    let confusion = &measures["confusion"];
    let called = |name: &str| probability(name) >= threshold;
    assert_eq!(
        confusion["true_positive"].as_u64(),
        Some(u64::from(called("lesions")))
    );
    assert_eq!(
        confusion["false_positive"].as_u64(),
        Some(u64::from(called("field-of-view")))
    );

    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        page.contains("../slides/lesions/overlay.png"),
        "links are relative to the page"
    );
    assert!(page.contains("failed: cannot read the image: not a TIFF"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page works offline"
    );
    assert!(out.join("roc.png").is_file());
    let json: Value =
        serde_json::from_slice(&std::fs::read(out.join("cohort.json")).unwrap()).unwrap();
    assert_eq!(json["measures"], report["measures"]);
}

#[test]
fn cohort_refuses_what_is_not_a_result() {
    let dir = scratch("cohort-refuse");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = celnet(&[
        "cohort",
        empty.to_str().unwrap(),
        "-o",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("holds neither a summary.json nor slide folders")
    );
    let labels = dir.join("labels.csv");
    std::fs::write(&labels, "name,label\nx,maybe\n").unwrap();
    let slide = dir.join("slide");
    assert_success(&heatmap(FIELD, &slide, &[]));
    let output = celnet(&[
        "cohort",
        slide.to_str().unwrap(),
        "-o",
        dir.join("out").to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&output.stderr).contains("row 2: \"maybe\" is not a label"));
}
