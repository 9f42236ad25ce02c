//! The localisation study end to end: `celnet mosaic`, `localize-eval`, `localize-tune` and
//! `faithfulness` on mosaics built from the shipped fixtures.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{FIXTURES, assert_success, celnet, json_stdout, scratch};

fn mosaics(name: &str, n: usize, seed: u64, part: &str) -> PathBuf {
    mosaics_with(name, n, seed, part, &[])
}

fn mosaics_with(name: &str, n: usize, seed: u64, part: &str, extra: &[&str]) -> PathBuf {
    let out = scratch(name).join("mosaics");
    let (n, seed) = (n.to_string(), seed.to_string());
    let mut args = vec![
        "mosaic",
        "--from",
        FIXTURES,
        "--out",
        out.to_str().unwrap(),
        "--n",
        &n,
        "--seed",
        &seed,
        "--part",
        part,
    ];
    args.extend_from_slice(extra);
    let output = celnet(&args);
    assert_success(&output);
    out
}

fn unit(v: &Value) -> f64 {
    let x = v.as_f64().expect("a number");
    assert!((0.0..=1.0).contains(&x), "{x} not in [0, 1]");
    x
}

#[test]
fn mosaics_are_deterministic_with_exact_masks() {
    let a = mosaics("mosaic_a", 6, 5, "1/2");
    let b = mosaics("mosaic_b", 6, 5, "1/2");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    let glimpses = manifest["glimpses"].as_array().unwrap();
    assert_eq!(glimpses.len(), 6);
    for g in glimpses {
        let name = g["image"].as_str().unwrap();
        let bytes = std::fs::read(a.join(name)).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(b.join(name)).unwrap(),
            "{name} differs"
        );
        let image = image::open(a.join(name)).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (96, 96));
        let mask = image::open(a.join(g["mask"].as_str().unwrap()))
            .unwrap()
            .to_luma8();
        let tiles: Vec<u64> = g["tumour_tiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert!(tiles.len() <= 5);
        for (x, y, p) in mask.enumerate_pixels() {
            let tile = u64::from(y / 32 * 3 + x / 32);
            let expected = if tiles.contains(&tile) { 255 } else { 0 };
            assert_eq!(p.0[0], expected, "{name} mask at ({x}, {y})");
        }
        // Every tile comes from the labelled class, and part 1/2 uses even-ranked files only.
        for (i, source) in g["sources"].as_array().unwrap().iter().enumerate() {
            let source = source.as_str().unwrap();
            let class = if tiles.contains(&(i as u64)) {
                "/1/"
            } else {
                "/0/"
            };
            assert!(source.contains(class), "tile {i} of {name} from {source}");
        }
    }
    let other = mosaics("mosaic_c", 6, 6, "1/2");
    assert_ne!(
        std::fs::read(a.join("00000.png")).unwrap(),
        std::fs::read(other.join("00000.png")).unwrap(),
        "another seed gives other mosaics"
    );
}

#[test]
fn mosaic_parts_never_share_a_source_patch() {
    let sources = |dir: &Path| -> Vec<String> {
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        manifest["glimpses"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["sources"].as_array().unwrap().clone())
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let first = sources(&mosaics("part_1", 8, 1, "1/2"));
    let second = sources(&mosaics("part_2", 8, 1, "2/2"));
    assert!(first.iter().all(|s| !second.contains(s)));
}

#[test]
fn localize_eval_reports_scores_in_range() {
    let dir = mosaics("localize_eval", 4, 9, "1/1");
    for method in ["celm", "gradcam3", "gradcam23", "csm"] {
        let report = json_stdout(&celnet(&[
            "localize-eval",
            dir.to_str().unwrap(),
            "--method",
            method,
            "--json",
        ]));
        assert_eq!(report["method"], method);
        assert_eq!(report["n"], 4);
        unit(&report["precision"]);
        unit(&report["recall"]);
        unit(&report["iou"]);
        if !report["pixel_auroc"].is_null() {
            unit(&report["pixel_auroc"]);
        }
    }
}

#[test]
fn localize_eval_rejects_missing_and_mismatched_masks() {
    let dir = scratch("bad_masks");
    let glimpse = image::RgbImage::from_pixel(96, 96, image::Rgb([200, 120, 180]));
    glimpse.save(dir.join("a.png")).unwrap();
    let output = celnet(&["localize-eval", dir.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no tumour mask"), "{stderr}");

    image::GrayImage::new(64, 64)
        .save(dir.join("a_mask.png"))
        .unwrap();
    let output = celnet(&["localize-eval", dir.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("64x64"), "{stderr}");

    let empty = scratch("no_glimpses");
    let output = celnet(&["localize-eval", empty.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no glimpses"));
}

#[test]
fn localize_tune_scores_each_method_on_held_out_mosaics() {
    let tune = mosaics("tune_small_a", 3, 2, "1/2");
    let test = mosaics("tune_small_b", 3, 3, "2/2");
    let report = json_stdout(&celnet(&[
        "localize-tune",
        tune.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--json",
    ]));
    for key in ["tuned", "test"] {
        let rows = report[key].as_array().unwrap();
        let methods: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
        assert_eq!(methods, ["celm", "gradcam3", "gradcam23", "csm"]);
        for r in rows {
            unit(&r["precision"]);
            unit(&r["recall"]);
        }
    }
    // The held-out rows use exactly the tuned parameters.
    assert_eq!(report["tuned"][0]["params"], report["test"][0]["params"]);
}

#[test]
fn faithfulness_ranks_maps_by_deletion_area() {
    // Mostly tumour tiles, so that some mosaics are called positive (here 2 of 4).
    let dir = mosaics_with(
        "faithfulness",
        4,
        4,
        "1/1",
        &["--normal-share", "0", "--max-tumour-tiles", "9"],
    );
    let report = json_stdout(&celnet(&[
        "faithfulness",
        dir.to_str().unwrap(),
        "--steps",
        "4",
        "--json",
    ]));
    let n = report["n"].as_u64().unwrap();
    assert!(n >= 1, "at least one mosaic is predicted positive");
    assert_eq!(report["glimpses"], 4);
    let methods = report["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["celm", "gradcam3", "gradcam23", "csm", "random"]);
    for m in methods {
        unit(&m["auc"]);
        let curve = m["mean_curve"].as_array().unwrap();
        assert_eq!(curve.len(), 5);
        // The first point is the untouched glimpse, the same for every map.
        assert_eq!(curve[0], methods[0]["mean_curve"][0]);
    }
}
