//! `celnet slide-mosaic` and `celnet slide-eval` on the shipped fixtures.

use serde_json::Value;

mod common;
use common::{FIXTURES, assert_success, celnet, json_stdout, scratch};

#[test]
fn synthetic_slides_carry_their_lesions_and_evaluate() {
    let dir = scratch("slides");
    let out = celnet(&[
        "slide-mosaic",
        "--from",
        FIXTURES,
        "--out",
        dir.to_str().unwrap(),
        "--n",
        "4",
        "--grid",
        "4",
        "--seed",
        "5",
        "--tumour-share",
        "0.5",
        "--lesion-sizes",
        "small",
    ]);
    assert_success(&out);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let slides = manifest["slides"].as_array().unwrap();
    assert_eq!(slides.len(), 4);
    let mut lesions = 0;
    for slide in slides {
        let image = image::open(dir.join(slide["image"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        assert_eq!(image.dimensions(), (384, 384));
        let mask = image::open(dir.join(slide["mask"].as_str().unwrap()))
            .unwrap()
            .to_luma8();
        // Every lesion cell is painted with its lesion's number, and only those.
        let cells = slide["lesions"].as_array().unwrap();
        lesions += cells.len();
        for (k, lesion) in cells.iter().enumerate() {
            for c in lesion.as_array().unwrap() {
                let c = c.as_u64().unwrap() as u32;
                assert_eq!(
                    mask.get_pixel((c % 4) * 96 + 48, (c / 4) * 96 + 48).0[0] as usize,
                    k + 1
                );
            }
        }
        for c in slide["glass_cells"].as_array().unwrap() {
            let c = c.as_u64().unwrap() as u32;
            assert_eq!(
                image.get_pixel((c % 4) * 96 + 48, (c / 4) * 96 + 48).0,
                [242, 242, 240]
            );
        }
        // Each cell names its patch, from the pool of its class; glass names none.
        let patches = slide["patches"].as_array().unwrap();
        assert_eq!(patches.len(), 16);
        for (c, name) in patches.iter().enumerate() {
            let name = name.as_str().unwrap();
            let glass = slide["glass_cells"].as_array().unwrap().contains(&c.into());
            let tumour = cells
                .iter()
                .any(|l| l.as_array().unwrap().contains(&c.into()));
            if glass {
                assert_eq!(name, "");
            } else {
                let class = if tumour { "1" } else { "0" };
                let file = std::path::Path::new(FIXTURES).join(class).join(name);
                assert!(
                    file.with_extension("jpg").exists() || file.with_extension("png").exists(),
                    "{}",
                    file.display()
                );
            }
        }
    }

    let scored = dir.join("scored.json");
    let report = json_stdout(&celnet(&[
        "slide-eval",
        dir.to_str().unwrap(),
        "--stride",
        "96",
        "--save",
        scored.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(report["n"], 4);
    assert_eq!(report["lesions"], lesions);
    let froc = report["froc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&froc));
    let at: Vec<f64> = ["0.25", "0.5", "1", "2", "4", "8"]
        .iter()
        .map(|k| report["sensitivity_at_fp"][k].as_f64().unwrap())
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] <= w[1]),
        "sensitivity falls as false positives are allowed: {at:?}"
    );
    assert!((at.iter().sum::<f64>() / 6.0 - froc).abs() < 1e-9);
    for slide in report["slides"].as_array().unwrap() {
        assert!(slide["true_points"].as_u64() <= slide["points"].as_u64());
        assert!(slide["false_lesions"].as_u64() <= slide["found_lesions"].as_u64());
        let p = slide["slide_probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    for key in ["froc_lesions", "category_accuracy", "accuracy_probability"] {
        let v = report[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} {v}");
    }
    let confusion = report["category_confusion"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 4, "every slide in the category table once");

    // The saved heatmaps evaluate to the same report without the network.
    let again = json_stdout(&celnet(&[
        "slide-eval",
        dir.to_str().unwrap(),
        "--scored",
        scored.to_str().unwrap(),
        "--json",
    ]));
    for key in ["auc", "froc", "froc_lesions", "category_accuracy", "slides"] {
        assert_eq!(again[key], report[key], "{key}");
    }

    // With hysteresis low enough to raise false lesions, each is traced to the patch (or
    // glass) under its peak.
    let mut low: Value =
        serde_json::from_str(&std::fs::read_to_string("weights/celnet-pcam.slide.json").unwrap())
            .unwrap();
    low["hysteresis"] = serde_json::json!({"seed": 0.3, "grow": 0.2});
    let low_model = dir.join("low-hysteresis.json");
    std::fs::write(&low_model, low.to_string()).unwrap();
    let traced_report = json_stdout(&celnet(&[
        "slide-eval",
        dir.to_str().unwrap(),
        "--scored",
        scored.to_str().unwrap(),
        "--slide-model",
        low_model.to_str().unwrap(),
        "--json",
    ]));
    let traced: u64 = traced_report["false_lesion_patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry[1].as_u64().unwrap())
        .sum();
    let false_lesions: u64 = traced_report["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|slide| slide["false_lesions"].as_u64().unwrap())
        .sum();
    assert!(false_lesions > 0, "the low hysteresis raises false lesions");
    assert_eq!(traced, false_lesions);

    // A slide model fitted on them loads and is the one evaluated.
    let model = dir.join("slide-model.json");
    let fit = celnet(&[
        "slide-fit",
        "--train",
        dir.to_str().unwrap(),
        "--train-scored",
        scored.to_str().unwrap(),
        "--selection",
        dir.to_str().unwrap(),
        "--selection-scored",
        scored.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
        "--json",
    ]);
    let chosen = json_stdout(&fit)["chosen"].clone();
    let fitted = json_stdout(&celnet(&[
        "slide-eval",
        dir.to_str().unwrap(),
        "--scored",
        scored.to_str().unwrap(),
        "--slide-model",
        model.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(fitted["category_accuracy"], chosen["category_accuracy"]);
    for key in ["seed", "grow"] {
        let (a, b) = (&fitted["hysteresis"][key], &chosen["hysteresis"][key]);
        assert!(
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-6,
            "{key}"
        );
    }
}

#[test]
fn staged_slides_hold_lesions_of_every_stage_measured_from_their_cells() {
    let dir = scratch("staged-slides");
    assert_success(&celnet(&[
        "slide-mosaic",
        "--from",
        FIXTURES,
        "--out",
        dir.to_str().unwrap(),
        "--n",
        "8",
        "--seed",
        "3",
        "--tumour-share",
        "0.9",
    ]));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let grid = manifest["options"]["grid"].as_u64().unwrap() as i64;
    assert!(grid >= 24);
    let patch_mm = 96.0 * 0.972 / 1000.0;
    let mut stages = std::collections::BTreeSet::new();
    for slide in manifest["slides"].as_array().unwrap() {
        let diameters = slide["diameters_mm"].as_array().unwrap();
        for (lesion, diameter) in slide["lesions"].as_array().unwrap().iter().zip(diameters) {
            // The longest distance between the corners of the lesion's patches, by brute force.
            let corners: Vec<(i64, i64)> = lesion
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_i64().unwrap())
                .flat_map(|c| {
                    let (x, y) = (c % grid, c / grid);
                    [(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)]
                })
                .collect();
            let longest = corners
                .iter()
                .flat_map(|a| {
                    corners
                        .iter()
                        .map(move |b| (a.0 - b.0).pow(2) + (a.1 - b.1).pow(2))
                })
                .max()
                .unwrap();
            let mm = (longest as f64).sqrt() * patch_mm;
            assert!((diameter.as_f64().unwrap() - mm).abs() < 1e-9);
            stages.insert(if mm <= 0.2 {
                "itc"
            } else if mm <= 2.0 {
                "micro"
            } else {
                "macro"
            });
        }
    }
    assert_eq!(stages.len(), 3, "lesions of every stage: {stages:?}");
    // The same seed builds the same slides.
    let again = dir.join("again");
    assert_success(&celnet(&[
        "slide-mosaic",
        "--from",
        FIXTURES,
        "--out",
        again.to_str().unwrap(),
        "--n",
        "8",
        "--seed",
        "3",
        "--tumour-share",
        "0.9",
    ]));
    let read = |d: &std::path::Path| {
        let mut m: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("manifest.json")).unwrap())
                .unwrap();
        m["slides"].take()
    };
    assert_eq!(read(&dir), read(&again));
    // Staged lesions need room for a macrometastasis.
    let small = celnet(&[
        "slide-mosaic",
        "--from",
        FIXTURES,
        "--out",
        dir.join("small").to_str().unwrap(),
        "--grid",
        "12",
    ]);
    assert!(!small.status.success());
    assert!(String::from_utf8_lossy(&small.stderr).contains("at least 24 patches"));
}
