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
    }

    let report = json_stdout(&celnet(&[
        "slide-eval",
        dir.to_str().unwrap(),
        "--stride",
        "96",
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
    }
}
