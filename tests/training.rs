//! Training is deterministic for a seed and resumes where it stopped: a run of one epoch
//! extended to two ends with exactly the weights of a straight two-epoch run.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use celnet::data::PatchSet;
use celnet::train::{OptimizerKind, TrainOptions, train};
use celnet::weights;

fn fixtures() -> PatchSet {
    PatchSet::from_folder(Path::new("tests/fixtures/pcam-valid-200"))
        .unwrap()
        .random_subset(48, 5)
}

fn options(epochs: usize) -> TrainOptions {
    TrainOptions {
        epochs,
        batch_size: 16,
        learning_rate: 1e-3,
        optimizer: OptimizerKind::Sgd,
        weight_decay: 1e-5,
        seed: 9,
        // The smallest crop that still holds the labelled centre: a quick step.
        crop: 32,
        checkpoint_secs: 3600,
    }
}

fn run_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn resumed_run_matches_a_straight_run() {
    let set = fixtures();
    let device = Device::flex();

    let straight = run_dir("train-straight");
    let state = train(&set, &set, options(2), &straight, &device, None).unwrap();
    assert_eq!(state.history.len(), 2);
    for m in &state.history {
        assert!(m.train_loss.is_finite() && m.valid_loss.is_finite());
        assert!((0.0..=1.0).contains(&m.valid_accuracy));
    }
    for file in [
        "best.bpk",
        "checkpoint.bpk",
        "optimizer.bpk",
        "state.json",
        "curves.png",
    ] {
        assert!(straight.join(file).exists(), "{file} missing");
    }
    let csv = std::fs::read_to_string(straight.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header and one row per epoch");

    let resumed = run_dir("train-resumed");
    train(&set, &set, options(1), &resumed, &device, None).unwrap();
    let state = train(&set, &set, options(2), &resumed, &device, None).unwrap();
    assert_eq!(state.history.len(), 2);

    let a = std::fs::read(straight.join("checkpoint.bpk")).unwrap();
    let b = std::fs::read(resumed.join("checkpoint.bpk")).unwrap();
    let x = Tensor::<4>::ones([1, 3, 48, 48], &device);
    let out = |bytes: &[u8]| {
        weights::load_bytes(bytes, &device)
            .unwrap()
            .forward(x.clone())
            .into_data()
    };
    assert_eq!(
        out(&a),
        out(&b),
        "resumed weights differ from the straight run"
    );
}
