//! Training is deterministic for a seed and resumes where it stopped: a run of one epoch
//! extended to two ends with exactly the weights of a straight two-epoch run.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use celnet::train::data::PatchSet;
use celnet::train::{OptimizerKind, Schedule, TrainOptions, train};
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
        // Both draw from the seeded streams, so a resumed run must reproduce them too.
        colour_jitter: 0.1,
        stain_jitter: 0.2,
        bn_batches: 2,
        // Cosine: the rate of a resumed epoch must be recomputed exactly as well.
        schedule: Schedule::Cosine,
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
    let rates: Vec<f64> = state.history.iter().map(|m| m.learning_rate).collect();
    assert_eq!(rates, vec![1e-3, 5e-4], "cosine over two epochs");

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

#[test]
fn official_pcam_hdf5_layout_is_read() {
    use celnet::train::data::load_split;
    // Written by h5py (tests/fixtures/tools/make_pcam_h5.py): chunked, gzip-compressed.
    let root = Path::new("tests/fixtures/pcam-mini");
    let set = load_split(root, "train").unwrap();
    assert_eq!((set.len(), set.side), (8, 96));
    let listing = std::fs::read_to_string(root.join("files.txt")).unwrap();
    for (i, line) in listing.lines().enumerate() {
        let (name, label) = line.split_once('\t').unwrap();
        assert_eq!(set.labels[i].to_string(), label, "label of {name}");
        // The same patch decoded from its JPEG here; PIL's IDCT may differ by a level or two.
        let path = format!("tests/fixtures/pcam-valid-200/{label}/{name}");
        let ours = celnet::input::decode_image(&std::fs::read(path).unwrap()).unwrap();
        let diff: f64 = ours
            .as_raw()
            .iter()
            .zip(set.patch(i))
            .map(|(&a, &b)| f64::from(a.abs_diff(b)))
            .sum::<f64>()
            / set.patch(i).len() as f64;
        assert!(diff < 2.0, "{name}: mean difference {diff}");
    }
}

#[test]
fn a_root_without_data_is_a_clear_error() {
    let err = celnet::train::data::load_split(Path::new("tests/fixtures"), "train").unwrap_err();
    assert!(
        err.to_string()
            .contains("camelyonpatch_level_2_split_train_x.h5"),
        "{err}"
    );
}
