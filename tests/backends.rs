//! flex and wgpu compute the same explanation. Natively wgpu runs on any Vulkan driver,
//! including Mesa's lavapipe on the CPU, so CI checks this without a GPU (`.ci/run` installs
//! `mesa-vulkan-drivers`). Where no adapter exists and `CI` is unset, the test says so and
//! passes; under CI a missing adapter fails it.

use burn::prelude::*;
use celnet::explain::{CelmParams, Explainer, Map};
use celnet::input::decode_image;
use celnet::weights;
use std::sync::OnceLock;

/// The wgpu runtime registers once per process, and the tests run on parallel threads, so
/// they share one initialisation.
fn wgpu_device() -> Option<Device> {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    match DEVICE.get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string())) {
        Ok(device) => Some(device.clone()),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: no wgpu adapter here ({e})");
            None
        }
        Err(e) => panic!("CI must provide a wgpu adapter (lavapipe): {e}"),
    }
}

fn max_abs_diff(a: &Map, b: &Map) -> f32 {
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn flex_and_wgpu_agree() {
    let Some(wgpu) = wgpu_device() else { return };
    let flex = Device::flex();
    let explainers = [
        Explainer::new(weights::load_default(&flex).unwrap(), &flex),
        Explainer::new(weights::load_default(&wgpu).unwrap(), &wgpu),
    ];
    for file in [
        "tests/fixtures/pcam-valid-200/0/patch0029847.jpg",
        "tests/fixtures/pcam-valid-200/1/patch0029612.jpg",
    ] {
        let image = decode_image(&std::fs::read(file).unwrap()).unwrap();
        let [a, b] = explainers
            .each_ref()
            .map(|e| pollster::block_on(e.explain(&image, &CelmParams::default())).unwrap());
        let (la, lb) = (a.prediction.logit, b.prediction.logit);
        assert!(
            (la - lb).abs() < 1e-4,
            "{file}: logit flex {la} vs wgpu {lb}"
        );
        for ((kind, x), (_, y)) in a.maps().zip(b.maps()) {
            let diff = max_abs_diff(x, y);
            assert!(diff < 1e-3, "{file}: {} differs by {diff}", kind.name());
        }
        let classifier = explainers[1].classifier();
        let predicted = pollster::block_on(classifier.predict(&image)).unwrap();
        assert!((predicted.logit - la).abs() < 1e-4);
    }
}

#[test]
fn flex_and_wgpu_agree_on_dense_windows() {
    let Some(wgpu) = wgpu_device() else { return };
    let flex = Device::flex();
    // 3x3 windows every 32 px over two fixture patches side by side and stacked.
    let a =
        decode_image(&std::fs::read("tests/fixtures/pcam-valid-200/1/patch0029612.jpg").unwrap())
            .unwrap();
    let b =
        decode_image(&std::fs::read("tests/fixtures/pcam-valid-200/0/patch0029847.jpg").unwrap())
            .unwrap();
    let mut region = image::RgbImage::new(160, 160);
    image::imageops::replace(&mut region, &a, 0, 0);
    image::imageops::replace(&mut region, &b, 64, 64);
    // Every window, then only the top-left one kept without context: flex computes only the
    // maps' top-left 96 px, wgpu computes everything and masks the rest.
    let mut top_left = vec![false; 9];
    top_left[0] = true;
    let kept = celnet::network::active_area::KeptWindows {
        kept: top_left,
        context: 0,
    };
    for kept in [None, Some(&kept)] {
        let [on_flex, on_wgpu] = [&flex, &wgpu].map(|device| {
            let classifier =
                celnet::Classifier::new(weights::load_default(device).unwrap(), device);
            let input = Tensor::<4>::from_data(celnet::input::to_tensor_data(&region), device);
            pollster::block_on(classifier.window_logits(input, 32, kept)).unwrap()
        });
        assert_eq!(on_flex.len(), 9);
        let compared = if kept.is_some() { 1 } else { 9 };
        for (x, y) in on_flex.iter().zip(&on_wgpu).take(compared) {
            assert!(
                (x - y).abs() < 1e-3,
                "dense logit flex {x} vs wgpu {y} ({kept:?})"
            );
        }
    }
}
