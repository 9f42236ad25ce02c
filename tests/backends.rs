//! flex and wgpu compute the same explanation. Natively wgpu runs on any Vulkan driver,
//! including Mesa's lavapipe on the CPU, so CI checks this without a GPU (`.ci/run` installs
//! `mesa-vulkan-drivers`). Where no adapter exists and `CI` is unset, the test says so and
//! passes; under CI a missing adapter fails it.

use burn::prelude::*;
use celnet::explain::{CelmParams, Engine};
use celnet::input::decode_image;
use celnet::maps::Map;
use celnet::weights;

fn wgpu_device() -> Option<Device> {
    match Device::wgpu_options().init() {
        Ok(device) => Some(device),
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
    let engines = [
        Engine::new(weights::load_default(&flex).unwrap(), &flex),
        Engine::new(weights::load_default(&wgpu).unwrap(), &wgpu),
    ];
    for file in [
        "tests/fixtures/pcam-valid-200/0/patch0029847.jpg",
        "tests/fixtures/pcam-valid-200/1/patch0029612.jpg",
    ] {
        let image = decode_image(&std::fs::read(file).unwrap()).unwrap();
        let [a, b] = engines
            .each_ref()
            .map(|e| pollster::block_on(e.explain(&image, &CelmParams::default())).unwrap());
        assert!(
            (a.logit - b.logit).abs() < 1e-4,
            "{file}: logit flex {} vs wgpu {}",
            a.logit,
            b.logit
        );
        for (name, x, y) in [
            ("cam2", &a.cam2, &b.cam2),
            ("cam3", &a.cam3, &b.cam3),
            ("csm", &a.csm, &b.csm),
            ("celm", &a.celm, &b.celm),
        ] {
            let diff = max_abs_diff(x, y);
            assert!(diff < 1e-3, "{file}: {name} differs by {diff}");
        }
        let predicted = pollster::block_on(engines[1].predict(&image)).unwrap();
        assert!((predicted - a.logit).abs() < 1e-4);
    }
}
