//! Per-glimpse prediction and explanation, heatmaps of a region, the slide answer of a large
//! heatmap, and training throughput.
//!
//! `cargo bench` reports medians on flex, and on wgpu when an adapter exists (natively on a
//! CPU-only machine that is Mesa's lavapipe, a correctness path rather than a fast one).

use std::hint::black_box;
use std::time::Duration;

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use celnet::explain::{CelmParams, Explainer, PreparedEvidence};
use celnet::input::decode_image;
use celnet::network::classifier::Tta;
use celnet::network::conv::conv3x3_f32;
use celnet::slide::probability::SlideAnswer;
use celnet::slide::scan::{DENSE_CONTEXT, DENSE_TILE};
use celnet::slide::{Heatmap, ModelScale, Scan, SlideModel, TissueMask, WindowGrid};
use celnet::train::bce_with_logits;
use celnet::{CelnetConfig, weights};
use criterion::{Criterion, Throughput, criterion_group};

// The `celnet` binary's allocator, so that the benches pay what it pays for memory.
#[global_allocator]
static GLOBAL: celnet::memory::Allocator = celnet::memory::Allocator;

const SAMPLE: &str = "tests/fixtures/pcam-valid-200/1/patch0029612.jpg";

fn devices() -> Vec<(&'static str, Device)> {
    let mut devices = vec![("flex", Device::flex())];
    match Device::wgpu_options().init() {
        Ok(device) => devices.push(("wgpu", device)),
        Err(e) => eprintln!("no wgpu adapter, benchmarking flex only: {e}"),
    }
    devices
}

fn inference(c: &mut Criterion) {
    let image = decode_image(&std::fs::read(SAMPLE).unwrap()).unwrap();
    let params = CelmParams::default();
    let mut group = c.benchmark_group("glimpse_96");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    for (name, device) in devices() {
        let explainer = Explainer::new(weights::load_default(&device).unwrap(), &device);
        let classifier = explainer.classifier();
        group.bench_function(format!("predict/{name}"), |b| {
            b.iter(|| pollster::block_on(classifier.predict(black_box(&image))).unwrap())
        });
        let augmented = classifier.clone().with_tta(Tta::Dihedral);
        group.bench_function(format!("predict_tta/{name}"), |b| {
            b.iter(|| pollster::block_on(augmented.predict(black_box(&image))).unwrap())
        });
        group.bench_function(format!("explain/{name}"), |b| {
            b.iter(|| pollster::block_on(explainer.explain(black_box(&image), &params)).unwrap())
        });
    }
    let evidence = {
        let device = Device::flex();
        let explainer = Explainer::new(weights::load_default(&device).unwrap(), &device);
        PreparedEvidence::new(pollster::block_on(explainer.evidence(&image)).unwrap(), &[])
    };
    group.bench_function("fuse_only/cpu", |b| {
        b.iter(|| evidence.fuse(black_box(&params)).unwrap())
    });
    group.finish();
}

fn training(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let mut group = c.benchmark_group("train_step_flex_batch64");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    for crop in [64usize, 96] {
        let model = CelnetConfig::new().init(&device);
        let x = Tensor::<4>::random([64, 3, crop, crop], Distribution::Default, &device);
        let y = Tensor::<1>::random([64], Distribution::Bernoulli(0.5), &device);
        group.throughput(Throughput::Elements(64));
        group.bench_function(format!("crop{crop}"), |b| {
            b.iter(|| {
                let logits = model.forward(x.clone()).reshape([64]);
                let loss = bce_with_logits(logits, y.clone());
                black_box(loss.backward());
            })
        });
    }
    group.finish();
}

/// Heatmaps of a 480x480 px region at the model's scale (25 fixture patches), flex only: every
/// window scored on its own (exact) or the region in one fully convolutional pass (dense), at
/// strides 32 (169 windows), 48 (81) and 96 (25).
fn heatmap(c: &mut Criterion) {
    let device = Device::flex();
    let classifier = Explainer::new(weights::load_default(&device).unwrap(), &device).classifier();
    let patch = decode_image(&std::fs::read(SAMPLE).unwrap()).unwrap();
    let mut region = image::RgbImage::new(480, 480);
    for i in 0..25 {
        let (x, y) = ((i % 5) * 96, (i / 5) * 96);
        image::imageops::replace(&mut region, &patch, x, y);
    }
    let tissue = TissueMask::of(&region);
    let mut group = c.benchmark_group("heatmap_480_flex");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for stride in [32usize, 48, 96] {
        let grid = WindowGrid::new(480, 480, stride).unwrap();
        group.throughput(Throughput::Elements((grid.cols * grid.rows) as u64));
        group.bench_function(format!("exact/stride{stride}"), |b| {
            b.iter(|| {
                pollster::block_on(Scan::exact(grid, &tissue, 64).score(
                    &classifier,
                    black_box(&region),
                    |_| {},
                ))
                .unwrap()
            })
        });
        group.bench_function(format!("dense/stride{stride}"), |b| {
            b.iter(|| {
                pollster::block_on(Scan::dense(grid, &tissue, DENSE_TILE).unwrap().score(
                    &classifier,
                    black_box(&region),
                    |_| {},
                ))
                .unwrap()
            })
        });
    }
    group.finish();
}

/// One tile of the dense pass as `celnet heatmap` cuts it at stride 32: [`DENSE_TILE`] px of
/// windows plus [`DENSE_CONTEXT`] px of context on each side (a 1152 px square of the sample
/// patch, 900 windows scored), flex. Prints where one pass spends its time, by kind.
fn dense_tile(c: &mut Criterion) {
    let device = Device::flex();
    let classifier = Explainer::new(weights::load_default(&device).unwrap(), &device).classifier();
    let side = DENSE_TILE + 2 * DENSE_CONTEXT;
    let crop = tiled_sample(side);
    if asked_for("dense_tile") {
        // Once first, so that the profile sees memory the allocator already holds, as later
        // tiles do.
        pollster::block_on(classifier.crop_window_logits(&crop, 32, None)).unwrap();
        let profile =
            pollster::block_on(classifier.profile_window_logits(&crop, 32, now_ms)).unwrap();
        eprintln!(
            "dense tile {side}x{side} px, stride 32: {:.0} ms",
            profile.total
        );
        for (kind, ms) in &profile.parts {
            eprintln!("  {kind}: {ms:.0} ms ({:.0}%)", 100.0 * ms / profile.total);
        }
    }
    let mut group = c.benchmark_group("dense_tile_flex");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(900));
    group.bench_function(format!("{side}px/stride32"), |b| {
        b.iter(|| {
            pollster::block_on(classifier.crop_window_logits(black_box(&crop), 32, None)).unwrap()
        })
    });
    group.finish();
}

/// How much context the dense pass's tiles need: a 1,536 px mosaic of the fixture patches
/// scored in tiles of 512 px with 0 to 96 px of context, against the same mosaic in one tile
/// (no seams). Prints the differences of the window probabilities; times nothing.
fn halo(_: &mut Criterion) {
    if !asked_for("halo") {
        return;
    }
    let device = Device::flex();
    let classifier = Explainer::new(weights::load_default(&device).unwrap(), &device).classifier();
    let side = 1536;
    let mosaic = fixture_mosaic(side);
    let tissue = TissueMask::of(&mosaic);
    let grid = WindowGrid::new(side, side, 32).unwrap();
    let score = |tile: usize, context: usize| {
        let scan = Scan::dense_with_context(grid, &tissue, tile, context).unwrap();
        let tiles = scan.tiles().len();
        let heatmap = pollster::block_on(scan.score(&classifier, &mosaic, |_| {})).unwrap();
        (heatmap, tiles)
    };
    let (whole, _) = score(side, 0);
    for context in [0, 32, 64, 96] {
        let (tiled, tiles) = score(512, context);
        let differences: Vec<f32> = whole
            .probabilities
            .iter()
            .zip(&tiled.probabilities)
            .filter_map(|(a, b)| Some((a.as_ref()? - b.as_ref()?).abs()))
            .collect();
        let mean = differences.iter().sum::<f32>() / differences.len() as f32;
        let max = differences.iter().copied().fold(0.0, f32::max);
        let over = differences.iter().filter(|&&d| d > 0.002).count();
        eprintln!(
            "halo: context {context} px, {tiles} tiles of 512 px: {} windows, mean |dp| {mean:.5}, \
             max {max:.4}, {over} over 0.002",
            differences.len()
        );
    }
}

/// Whether the command line's filter (criterion's first free argument) names `part`, or there
/// is none: work done outside criterion's timing (profiles, the halo study) runs only then.
fn asked_for(part: &str) -> bool {
    let mut filters = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .peekable();
    filters.peek().is_none() || filters.any(|f| part.contains(&f) || f.contains(part))
}

/// A `side` x `side` mosaic of the fixture patches of both classes, in file-name order.
fn fixture_mosaic(side: usize) -> image::RgbImage {
    let mut files: Vec<_> = ["0", "1"]
        .iter()
        .flat_map(|class| {
            std::fs::read_dir(format!("tests/fixtures/pcam-valid-200/{class}"))
                .unwrap()
                .map(|entry| entry.unwrap().path())
        })
        .collect();
    files.sort_by_key(|path| path.file_name().map(|name| name.to_owned()));
    let mut image = image::RgbImage::new(side as u32, side as u32);
    let positions = (0..side)
        .step_by(96)
        .flat_map(|y| (0..side).step_by(96).map(move |x| (x, y)));
    for ((x, y), file) in positions.zip(files.iter().cycle()) {
        let patch = decode_image(&std::fs::read(file).unwrap()).unwrap();
        image::imageops::replace(&mut image, &patch, x as i64, y as i64);
    }
    image
}

/// Milliseconds since the first call.
fn now_ms() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1e3
}

/// A `side` x `side` image of the sample patch repeated.
fn tiled_sample(side: usize) -> image::RgbImage {
    let patch = decode_image(&std::fs::read(SAMPLE).unwrap()).unwrap();
    let mut image = image::RgbImage::new(side as u32, side as u32);
    for y in (0..side).step_by(96) {
        for x in (0..side).step_by(96) {
            image::imageops::replace(&mut image, &patch, x as i64, y as i64);
        }
    }
    image
}

/// The slide answer (lesions by hysteresis, features, slide probability) of a 300x300-window
/// heatmap: a 9,700 x 9,700 px region at the model's scale and stride 32, whose dense pass takes
/// minutes. Probabilities are smooth blobs over a low floor, so lesions of many sizes exist.
fn slide_answer(c: &mut Criterion) {
    let side = 300;
    let grid = WindowGrid {
        stride: 32,
        cols: side,
        rows: side,
    };
    let probabilities = (0..side * side)
        .map(|i| {
            let (x, y) = ((i % side) as f32, (i / side) as f32);
            let wave = (x / 7.0).sin() * (y / 11.0).cos() + (x / 23.0 + y / 17.0).sin();
            (i % 97 != 0).then(|| (0.5 + 0.3 * wave).clamp(0.0, 1.0))
        })
        .collect();
    let heatmap = Heatmap {
        grid,
        probabilities,
    };
    let model = SlideModel::shipped();
    let mut group = c.benchmark_group("slide_answer");
    group.throughput(Throughput::Elements((side * side) as u64));
    group.bench_function("300x300_windows", |b| {
        b.iter(|| SlideAnswer::of(black_box(&heatmap), &ModelScale::NONE, 0.972, model))
    });
    group.finish();
}

/// CELNet's 3x3 convolutions on one glimpse: flex's `conv2d` (the native path) against this
/// crate's CPU kernels (the wasm path: Winograd at stride 1 from 8 channels, direct otherwise),
/// both on one thread here: `RAYON_NUM_THREADS=1 cargo bench --bench engine -- conv3x3`.
fn convolution(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("conv3x3");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    let layers = [
        (3, 16, 96, 1),
        (16, 16, 96, 1),
        (16, 32, 96, 2),
        (32, 32, 48, 1),
        (32, 64, 48, 2),
        (64, 64, 24, 1),
    ];
    for (c_in, c_out, side, stride) in layers {
        let x = Tensor::<4>::random([1, c_in, side, side], Distribution::Default, &device);
        let w = Tensor::<4>::random([c_out, c_in, 3, 3], Distribution::Default, &device);
        let bias = Tensor::<1>::random([c_out], Distribution::Default, &device);
        let options = ConvOptions::new([stride, stride], [1, 1], [1, 1], 1);
        let kernel = Conv3x3 {
            shape: [1, c_in, side, side],
            c_out,
            stride,
        };
        group.bench_function(format!("flex/{}", kernel.name()), |b| {
            b.iter(|| {
                let out = conv2d(x.clone(), w.clone(), Some(bias.clone()), options.clone());
                black_box(out.into_data())
            })
        });
        let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
        let (xs, ws) = (values(x), values(w));
        let bs = bias.into_data().try_to_vec::<f32>().unwrap();
        kernel.bench(&mut group, &xs, &ws, &bs);
    }
    // The same kernels on the same layers of one dense tile (1,152 px, twelve glimpses across),
    // where the maps no longer fit in cache; flex's path is left out there (seconds per call).
    group.sample_size(10);
    for (c_in, c_out, side, stride) in layers {
        let side = side * (DENSE_TILE + 2 * DENSE_CONTEXT) / 96;
        let random = |n: usize| (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5);
        let xs: Vec<f32> = random(c_in * side * side).collect();
        let ws: Vec<f32> = random(c_out * c_in * 9).collect();
        let bs: Vec<f32> = random(c_out).collect();
        let kernel = Conv3x3 {
            shape: [1, c_in, side, side],
            c_out,
            stride,
        };
        kernel.bench(&mut group, &xs, &ws, &bs);
    }
    group.finish();
}

/// One layer's 3x3 convolution by this crate's CPU kernels.
struct Conv3x3 {
    shape: [usize; 4],
    c_out: usize,
    stride: usize,
}

impl Conv3x3 {
    /// The layer's name in the bench ids: `<c_in>to<c_out>_<side>px_stride<stride>`.
    fn name(&self) -> String {
        let [_, c_in, side, _] = self.shape;
        format!("{c_in}to{}_{side}px_stride{}", self.c_out, self.stride)
    }

    /// Times [`conv3x3_f32`] on `xs`, weights `ws` and bias `bs` as `celnet/<layer>`.
    fn bench<M: criterion::measurement::Measurement>(
        &self,
        group: &mut criterion::BenchmarkGroup<'_, M>,
        xs: &[f32],
        ws: &[f32],
        bs: &[f32],
    ) {
        let (c_out, stride) = (self.c_out, self.stride);
        group.bench_function(format!("celnet/{}", self.name()), |b| {
            b.iter(|| conv3x3_f32(black_box(xs), self.shape, ws, c_out, Some(bs), stride))
        });
    }
}

criterion_group!(
    benches,
    inference,
    heatmap,
    dense_tile,
    halo,
    training,
    convolution,
    slide_answer
);
fn main() {
    celnet::memory::keep_freed_pages();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
