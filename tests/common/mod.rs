//! Helpers shared by the integration tests: driving the `celnet` binary, comparing pictures.
#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The shipped validation fixtures (PCam, CC0): `0/` and `1/`, 100 patches each.
pub const FIXTURES: &str = "tests/fixtures/pcam-valid-200";

/// Runs the `celnet` binary built for these tests.
pub fn celnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_celnet"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// Panics with the exit status and stderr unless the run succeeded.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The JSON a successful run printed; panics with stderr otherwise.
pub fn json_stdout(output: &Output) -> Value {
    assert_success(output);
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

/// An empty scratch folder under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Mean and largest absolute difference over all samples of two images of one size.
pub fn difference(a: &image::RgbImage, b: &image::RgbImage) -> (f64, u8) {
    assert_eq!(a.dimensions(), b.dimensions());
    let diffs = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y));
    let (sum, max) = diffs.fold((0u64, 0u8), |(s, m), d| (s + u64::from(d), m.max(d)));
    (sum as f64 / a.as_raw().len() as f64, max)
}
