//! Synthetic slides with known lesions, built from whole PCam patches, and the slide-level
//! evaluation of the paper (Camelyon16's slide AUC and FROC) on them.
//!
//! Camelyon16 is not public here. A synthetic slide is a grid of 96x96 PCam patches at the
//! model's scale: label-0 patches for normal tissue, one to a few contiguous clusters of
//! label-1 patches for lesions on tumour slides, and a blob of bare glass so that tissue
//! detection matters. The lesion mask is exact at patch level.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;

use image::{GrayImage, Rgb, RgbImage};
use rand::seq::IndexedRandom;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, FileContext, Result};
use crate::input::{decode_image, read_image, save_image};
use crate::metrics::{Detection, Froc, auc, froc};
use crate::network::classifier::Classifier;
use crate::network::model::GLIMPSE;
use crate::slide::export::points_in_input;
use crate::slide::file::resolution::file_resolution;
use crate::slide::heatmap::{Heatmap, SlideScores};
use crate::slide::lesions::{Category, Hysteresis, cells_diameter};
use crate::slide::probability::{SlideAnswer, SlideModel};
use crate::slide::scale::MODEL_MPP;
use crate::slide::scale::ModelScale;
use crate::slide::scan::{Mode, ScanConfig};
use crate::slide::{Analysis, OpenedImage};
use crate::studies::glimpse_mosaic::class_pools;
use crate::train::calibration::expected_calibration_error;
use crate::train::data::{Half, patch_name};

/// The colour of bare glass.
pub const GLASS: [u8; 3] = [242, 242, 240];

/// How to build a set of synthetic slides.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SlideMosaicOptions {
    pub n: usize,
    pub seed: u64,
    /// Patches per side.
    pub grid: usize,
    /// Share of slides with lesions.
    pub tumour_share: f64,
    /// Lesions per tumour slide are drawn from `1..=max_lesions`.
    pub max_lesions: usize,
    /// Patches per lesion are drawn from `1..=max_lesion_patches`.
    pub max_lesion_patches: usize,
    /// Share of each slide left as bare glass.
    pub glass_share: f64,
    /// Part `k` of `n` of each class's sorted files, as for glimpse mosaics.
    pub part: (usize, usize),
    /// Only this half of the split ([`Half`]), before taking the part.
    #[serde(default)]
    pub half: Option<Half>,
    /// How lesions are sized.
    #[serde(default)]
    pub lesion_sizes: LesionSizes,
}

/// How a set's lesions are sized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LesionSizes {
    /// One to `max_lesions` blobs of one to `max_lesion_patches` patches each.
    #[default]
    Small,
    /// Each tumour slide's largest lesion is drawn from the three stages in equal shares:
    /// isolated tumour cells (one patch), a micrometastasis (a blob of 2 to 24 patches, at most
    /// 2 mm across) or a macrometastasis (a band more than 2 mm long, which needs a grid of 24
    /// patches or more); up to two smaller lesions join it.
    Staged,
}

impl Default for SlideMosaicOptions {
    fn default() -> Self {
        Self {
            n: 20,
            seed: 1,
            grid: 24,
            tumour_share: 0.5,
            max_lesions: 3,
            max_lesion_patches: 4,
            glass_share: 0.15,
            part: (1, 1),
            half: None,
            lesion_sizes: LesionSizes::Staged,
        }
    }
}

/// One slide of a set, as listed in `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SlideEntry {
    pub image: String,
    /// Lesion `k` is painted `k + 1` (0 = no lesion).
    pub mask: String,
    /// The patch cells (row-major indices) of each lesion.
    pub lesions: Vec<Vec<usize>>,
    pub glass_cells: Vec<usize>,
    /// Each lesion's longest diameter, mm (patch cells at the model's pixel size).
    #[serde(default)]
    pub diameters_mm: Vec<f64>,
    /// The patch (its [`patch_name`]) in each cell, row-major, empty for glass: which patches
    /// a false alarm comes from, since every slide of a set draws on the same pools. Empty in
    /// manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<String>,
}

impl SlideEntry {
    /// The slide's true category: that of its largest lesion.
    pub fn category(&self) -> Category {
        self.diameters_mm
            .iter()
            .map(|&d| Category::of_diameter(d))
            .max()
            .unwrap_or(Category::Negative)
    }
}

/// The longest diameter of a lesion made of `cells` (row-major patch indices on a `grid` x
/// `grid` slide), mm.
fn lesion_diameter_mm(cells: &[usize], grid: usize) -> f64 {
    let cells: Vec<(usize, usize)> = cells.iter().map(|&c| (c % grid, c / grid)).collect();
    cells_diameter(&cells) * GLIMPSE as f64 * MODEL_MPP / 1000.0
}

/// A macrometastasis-sized band on a grid of at least 24 patches: 22 patches or more along a
/// row or a column, two or three wide, wandering by a patch at a time; only free cells are
/// taken.
fn grow_band(free: &BTreeSet<usize>, grid: usize, rng: &mut impl Rng) -> Vec<usize> {
    let length = rng.random_range(22..grid);
    let along_rows = rng.random_bool(0.5);
    let start = rng.random_range(0..=grid - length);
    let mut across = rng.random_range(0..grid - 3);
    let mut band = Vec::new();
    for step in 0..length {
        let width = rng.random_range(2..=3);
        for w in 0..width {
            let (a, b) = (start + step, (across + w).min(grid - 1));
            let cell = if along_rows {
                b * grid + a
            } else {
                a * grid + b
            };
            if free.contains(&cell) && !band.contains(&cell) {
                band.push(cell);
            }
        }
        across = (across as i64 + rng.random_range(-1..=1)).clamp(0, grid as i64 - 3) as usize;
    }
    band
}

/// A blob of 2 to 24 patches whose diameter makes it a micrometastasis (redrawn until it is).
fn grow_micro(free: &BTreeSet<usize>, grid: usize, rng: &mut impl Rng) -> Vec<usize> {
    for _ in 0..50 {
        let blob = grow_blob(free, grid, rng.random_range(2..=24), rng);
        if Category::of_diameter(lesion_diameter_mm(&blob, grid)) == Category::Micro {
            return blob;
        }
    }
    Vec::new()
}

/// `manifest.json` of a slide folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SlideManifest {
    pub source: String,
    pub options: SlideMosaicOptions,
    pub slides: Vec<SlideEntry>,
}

/// `count` cells grown from a random free cell through free 4-neighbours (fewer when the free
/// region is smaller).
fn grow_blob(free: &BTreeSet<usize>, grid: usize, count: usize, rng: &mut impl Rng) -> Vec<usize> {
    // In order (a set that iterates in a random order would make the slides depend on it).
    let seeds: Vec<usize> = free.iter().copied().collect();
    let Some(&start) = seeds.choose(rng) else {
        return Vec::new();
    };
    let mut blob = vec![start];
    while blob.len() < count {
        let frontier: Vec<usize> = blob
            .iter()
            .flat_map(|&c| {
                let (x, y) = (c % grid, c / grid);
                let mut n = Vec::new();
                if x > 0 {
                    n.push(c - 1);
                }
                if x + 1 < grid {
                    n.push(c + 1);
                }
                if y > 0 {
                    n.push(c - grid);
                }
                if y + 1 < grid {
                    n.push(c + grid);
                }
                n
            })
            .filter(|c| free.contains(c) && !blob.contains(c))
            .collect();
        match frontier.choose(rng) {
            Some(&c) => blob.push(c),
            None => break,
        }
    }
    blob
}

/// Writes `image` as a PNG whose pHYs chunk declares the model's pixel size.
fn save_at_model_scale(image: &RgbImage, path: &Path) -> Result<()> {
    let write = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut encoder = png::Encoder::new(file, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let per_metre = (1e6 / MODEL_MPP).round() as u32;
        encoder.set_pixel_dims(Some(png::PixelDimensions {
            xppu: per_metre,
            yppu: per_metre,
            unit: png::Unit::Meter,
        }));
        encoder.write_header()?.write_image_data(image.as_raw())?;
        Ok(())
    };
    write().map_err(|e| CelnetError::ImageWrite {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Builds `options.n` slides from a split folder into `out`: `slide-NNN.png` (with pHYs),
/// `slide-NNN_mask.png` and `manifest.json`. Deterministic for a seed.
pub fn build(split: &Path, out: &Path, options: &SlideMosaicOptions) -> Result<SlideManifest> {
    if options.grid < 2 || options.max_lesions == 0 {
        return Err(CelnetError::InvalidParameter(
            "slide mosaics need a grid of at least 2 patches and at least one lesion".into(),
        ));
    }
    if options.lesion_sizes == LesionSizes::Staged && options.grid < 24 {
        return Err(CelnetError::InvalidParameter(format!(
            "staged lesions need a grid of at least 24 patches (a macrometastasis is more than \
             2 mm, 22 patches at {MODEL_MPP} µm/px), got {}",
            options.grid
        )));
    }
    let (normal, tumour) = class_pools(split, options.part, options.half)?;
    std::fs::create_dir_all(out).map_err(|e| CelnetError::io(out, e))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let grid = options.grid;
    let cells = grid * grid;
    let side = (grid * GLIMPSE) as u32;
    let mut slides = Vec::with_capacity(options.n);
    for index in 0..options.n {
        let mut free: BTreeSet<usize> = (0..cells).collect();
        let glass_count = (options.glass_share * cells as f64).round() as usize;
        let mut lesions: Vec<Vec<usize>> = Vec::new();
        let mut take = |lesion: Vec<usize>, free: &mut BTreeSet<usize>| {
            for c in &lesion {
                free.remove(c);
                // Keep lesions apart: their neighbours stay normal.
                for n in [c.wrapping_sub(1), c + 1, c.wrapping_sub(grid), c + grid] {
                    free.remove(&n);
                }
            }
            if !lesion.is_empty() {
                lesions.push(lesion);
            }
        };
        let tumour_slide = rng.random_bool(options.tumour_share.clamp(0.0, 1.0));
        let glass_cells = match options.lesion_sizes {
            LesionSizes::Small => {
                let glass_cells = grow_blob(&free, grid, glass_count, &mut rng);
                for c in &glass_cells {
                    free.remove(c);
                }
                if tumour_slide {
                    for _ in 0..rng.random_range(1..=options.max_lesions) {
                        let size = rng.random_range(1..=options.max_lesion_patches.max(1));
                        let lesion = grow_blob(&free, grid, size, &mut rng);
                        take(lesion, &mut free);
                    }
                }
                glass_cells
            }
            LesionSizes::Staged => {
                // Lesions first, so that glass never cuts a band short.
                if tumour_slide {
                    let stage = rng.random_range(0..3);
                    let largest = match stage {
                        0 => grow_blob(&free, grid, 1, &mut rng),
                        1 => grow_micro(&free, grid, &mut rng),
                        _ => grow_band(&free, grid, &mut rng),
                    };
                    take(largest, &mut free);
                    for _ in 0..rng.random_range(0..=2) {
                        let smaller = if stage == 2 && rng.random_bool(0.5) {
                            grow_micro(&free, grid, &mut rng)
                        } else {
                            grow_blob(&free, grid, 1, &mut rng)
                        };
                        take(smaller, &mut free);
                    }
                }
                let glass_cells = grow_blob(&free, grid, glass_count, &mut rng);
                for c in &glass_cells {
                    free.remove(c);
                }
                glass_cells
            }
        };
        let mut slide = RgbImage::from_pixel(side, side, Rgb(GLASS));
        let mut mask = GrayImage::new(side, side);
        let lesion_of = |c: usize| lesions.iter().position(|l| l.contains(&c));
        let mut patches = vec![String::new(); cells];
        for (c, patch_in_cell) in patches.iter_mut().enumerate() {
            if glass_cells.contains(&c) {
                continue;
            }
            let lesion = lesion_of(c);
            let pool = if lesion.is_some() { &tumour } else { &normal };
            let path = pool.choose(&mut rng).expect("pools are not empty");
            *patch_in_cell = patch_name(&path.to_string_lossy());
            let patch = read_image(path)?;
            let (x, y) = ((c % grid * GLIMPSE) as i64, (c / grid * GLIMPSE) as i64);
            image::imageops::replace(&mut slide, &patch, x, y);
            if let Some(l) = lesion {
                let value = image::Luma([(l + 1).min(255) as u8]);
                for dy in 0..GLIMPSE as u32 {
                    for dx in 0..GLIMPSE as u32 {
                        mask.put_pixel(x as u32 + dx, y as u32 + dy, value);
                    }
                }
            }
        }
        let entry = SlideEntry {
            image: format!("slide-{index:03}.png"),
            mask: format!("slide-{index:03}_mask.png"),
            diameters_mm: lesions
                .iter()
                .map(|l| lesion_diameter_mm(l, grid))
                .collect(),
            lesions,
            glass_cells,
            patches,
        };
        save_at_model_scale(&slide, &out.join(&entry.image))?;
        save_image(&mask, &out.join(&entry.mask))?;
        slides.push(entry);
    }
    let manifest = SlideManifest {
        source: split.display().to_string(),
        options: options.clone(),
        slides,
    };
    let path = out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&path, text).map_err(|e| CelnetError::io(&path, e))?;
    Ok(manifest)
}

/// One slide's heatmap as scored, kept so that lesions and slide models can be evaluated again
/// without the network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoredSlide {
    pub image: String,
    /// The input's full-resolution pixel size, µm.
    pub mpp: f64,
    pub scale: ModelScale,
    pub heatmap: Heatmap,
    /// Seconds the analysis took.
    pub seconds: f64,
}

/// Every slide of a folder as scored (`celnet slide-eval --save`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoredSet {
    /// The network weights that scored them, as the caller names them.
    #[serde(default)]
    pub weights: String,
    pub stride: usize,
    pub mode: Mode,
    pub slides: Vec<ScoredSlide>,
}

/// Reads the manifest of a folder made by [`build`].
pub fn read_manifest(dir: &Path) -> Result<SlideManifest> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| CelnetError::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| CelnetError::Dataset(format!("{}: not a slide manifest: {e}", path.display())))
}

/// Scores every slide of a folder made by [`build`] as `config` says, through the same
/// [`Analysis`] as `celnet heatmap`. `progress(done, total)` follows slides.
pub fn score_slides(
    classifier: &Classifier,
    dir: &Path,
    config: &ScanConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<ScoredSet> {
    let manifest = read_manifest(dir)?;
    let mut slides = Vec::new();
    for (s, entry) in manifest.slides.iter().enumerate() {
        let start = std::time::Instant::now();
        let image_path = dir.join(&entry.image);
        let bytes = std::fs::read(&image_path).map_err(|e| CelnetError::io(&image_path, e))?;
        let image = decode_image(&bytes).in_file(&image_path)?;
        let input = OpenedImage::<std::io::Empty>::decoded(image, file_resolution(&bytes));
        let mut analysis =
            Analysis::new(Rc::new(input), None, None, *config).in_file(&image_path)?;
        pollster::block_on(analysis.run(classifier, |_| {}))?;
        slides.push(ScoredSlide {
            image: entry.image.clone(),
            mpp: analysis.pixel_size().mpp,
            scale: analysis.scale(),
            heatmap: analysis.heatmap(),
            seconds: start.elapsed().as_secs_f64(),
        });
        progress(s + 1, manifest.slides.len());
    }
    Ok(ScoredSet {
        weights: String::new(),
        stride: config.stride,
        mode: config.mode,
        slides,
    })
}

/// One slide's result.
#[derive(Clone, Debug, Serialize)]
pub struct SlideResult {
    pub image: String,
    pub lesions: usize,
    pub category: Category,
    /// The highest window probability (0 without tissue).
    pub score: f32,
    /// Other slide scores of the same heatmap.
    pub scores: SlideScores,
    pub slide_probability: f64,
    pub slide_category: Category,
    /// Lesions found, and those whose peak lies in no true lesion.
    pub found_lesions: usize,
    pub false_lesions: usize,
    /// The largest found lesion's diameter, mm (0 without one).
    pub largest_diameter_mm: f64,
    /// The largest true lesion's diameter, mm (0 on normal slides).
    pub true_diameter_mm: f64,
    pub points: usize,
    pub true_points: usize,
    pub seconds: f64,
}

/// Slide AUC, FROC, lesions and categories over a folder of synthetic slides.
#[derive(Clone, Debug, Serialize)]
pub struct SlideEvaluation {
    pub n: usize,
    pub tumour_slides: usize,
    pub lesions: usize,
    /// AUC of the slide score (the maximum) against "has a lesion"; `None` with one class only.
    pub auc: Option<f64>,
    /// AUC of each slide score of [`SlideScores`].
    pub auc_by_score: BTreeMap<String, Option<f64>>,
    /// AUC of the slide model's probability.
    pub auc_probability: Option<f64>,
    /// Expected calibration error of the slide probability (ten bins).
    pub ece_probability: f64,
    /// Accuracy of the call at the slide model's threshold.
    pub accuracy_probability: f64,
    /// FROC with the tumour points (non-maximum suppression) as detections.
    pub froc: f64,
    /// Sensitivity by average false positives per slide (`"0.25"` to `"8"`), tumour points.
    pub sensitivity_at_fp: BTreeMap<String, f64>,
    /// FROC with the lesions' peaks as detections.
    pub froc_lesions: f64,
    pub sensitivity_at_fp_lesions: BTreeMap<String, f64>,
    /// Lesions found on normal slides, per normal slide.
    pub false_lesions_per_normal_slide: f64,
    /// Lesions whose peak lies in no true lesion, per slide.
    pub false_lesions_per_slide: f64,
    /// The patches under false lesions' peaks (`glass` for a peak on glass), with how many
    /// false lesions each holds, most first; empty when the manifest does not record its
    /// slides' patches.
    pub false_lesion_patches: Vec<(String, usize)>,
    /// Share of slides whose category (negative, itc, micro, macro) is right.
    pub category_accuracy: f64,
    /// `confusion[true][called]`, categories in the order negative, itc, micro, macro.
    pub category_confusion: [[usize; 4]; 4],
    pub hysteresis: Hysteresis,
    pub stride: usize,
    pub mode: Mode,
    /// Median seconds per slide of the analysis that scored them.
    pub median_seconds: f64,
    pub slides: Vec<SlideResult>,
}

fn rates(froc: Froc) -> (f64, BTreeMap<String, f64>) {
    let map = froc
        .sensitivity_at_fp
        .into_iter()
        .map(|(rate, sensitivity)| (rate.to_string(), sensitivity))
        .collect();
    (froc.score, map)
}

/// Evaluates `scored` (the slides of the folder `dir`, made by [`build`]) with `model`: slide
/// scores, the slide probability, tumour points and lesions against the lesions' patch cells
/// (what the masks paint).
pub fn evaluate_scored(
    dir: &Path,
    scored: &ScoredSet,
    model: &SlideModel,
) -> Result<SlideEvaluation> {
    let manifest = read_manifest(dir)?;
    if manifest.slides.len() != scored.slides.len() {
        return Err(CelnetError::Dataset(format!(
            "{} holds {} slides, the scores {}",
            dir.display(),
            manifest.slides.len(),
            scored.slides.len()
        )));
    }
    let mut point_detections = Vec::new();
    let mut lesion_detections = Vec::new();
    let mut results = Vec::new();
    let mut confusion = [[0usize; 4]; 4];
    let mut lesion_base = 0;
    let mut false_patches: BTreeMap<String, usize> = BTreeMap::new();
    for (s, (entry, slide)) in manifest.slides.iter().zip(&scored.slides).enumerate() {
        // The lesion under a point, from the lesions' patch cells (what the mask paints), so
        // that evaluating again (as `slide-fit` does for every candidate) reads no image.
        let grid = manifest.options.grid;
        let cell_at = |x: f64, y: f64| {
            let (col, row) = ((x / GLIMPSE as f64) as usize, (y / GLIMPSE as f64) as usize);
            (x >= 0.0 && y >= 0.0 && col < grid && row < grid).then_some(row * grid + col)
        };
        let lesion_at = |x: f64, y: f64| {
            let cell = cell_at(x, y)?;
            let lesion = entry.lesions.iter().position(|l| l.contains(&cell))?;
            Some(lesion_base + lesion)
        };
        let points = points_in_input(&slide.heatmap.tumour_points(), &slide.scale);
        let mut true_points = 0;
        for p in &points {
            let lesion = lesion_at(p.x, p.y);
            true_points += usize::from(lesion.is_some());
            point_detections.push(Detection {
                slide: s,
                score: p.probability,
                lesion,
            });
        }
        let answer = SlideAnswer::of(&slide.heatmap, &slide.scale, slide.mpp, model);
        let mut false_lesions = 0;
        for l in &answer.lesions {
            let lesion = lesion_at(l.peak.x, l.peak.y);
            false_lesions += usize::from(lesion.is_none());
            if lesion.is_none()
                && let Some(patch) = cell_at(l.peak.x, l.peak.y).and_then(|c| entry.patches.get(c))
            {
                let name = if patch.is_empty() { "glass" } else { patch };
                *false_patches.entry(name.to_owned()).or_insert(0) += 1;
            }
            lesion_detections.push(Detection {
                slide: s,
                score: l.peak.probability,
                lesion,
            });
        }
        lesion_base += entry.lesions.len();
        let category = entry.category();
        confusion[category as usize][answer.category as usize] += 1;
        let heatmap = &slide.heatmap;
        results.push(SlideResult {
            image: entry.image.clone(),
            lesions: entry.lesions.len(),
            category,
            score: heatmap.slide_score().unwrap_or(0.0),
            scores: heatmap.slide_scores(),
            slide_probability: answer.probability.unwrap_or(0.0),
            slide_category: answer.category,
            found_lesions: answer.lesions.len(),
            false_lesions,
            largest_diameter_mm: answer.lesions.first().map_or(0.0, |l| l.diameter_mm),
            true_diameter_mm: entry.diameters_mm.iter().copied().fold(0.0, f64::max),
            points: points.len(),
            true_points,
            seconds: slide.seconds,
        });
    }
    let n = results.len();
    let labels: Vec<u8> = results.iter().map(|r| u8::from(r.lesions > 0)).collect();
    let scores: Vec<f32> = results.iter().map(|r| r.score).collect();
    let probabilities: Vec<f32> = results.iter().map(|r| r.slide_probability as f32).collect();
    let normal = results.iter().filter(|r| r.lesions == 0);
    let normal_count = normal.clone().count();
    let (froc_points, at_fp_points) = rates(froc(&point_detections, lesion_base, n));
    let (froc_lesions, at_fp_lesions) = rates(froc(&lesion_detections, lesion_base, n));
    let mut seconds: Vec<f64> = results.iter().map(|r| r.seconds).collect();
    seconds.sort_by(f64::total_cmp);
    Ok(SlideEvaluation {
        n,
        tumour_slides: labels.iter().filter(|&&l| l == 1).count(),
        lesions: lesion_base,
        auc: auc(&scores, &labels),
        auc_by_score: SlideScores::NAMES
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let values: Vec<f32> = results.iter().map(|r| r.scores.values()[k]).collect();
                (name.to_string(), auc(&values, &labels))
            })
            .collect(),
        auc_probability: auc(&probabilities, &labels),
        ece_probability: expected_calibration_error(&probabilities, &labels),
        accuracy_probability: results
            .iter()
            .filter(|r| (r.slide_probability >= model.threshold) == (r.lesions > 0))
            .count() as f64
            / n.max(1) as f64,
        froc: froc_points,
        sensitivity_at_fp: at_fp_points,
        froc_lesions,
        sensitivity_at_fp_lesions: at_fp_lesions,
        false_lesions_per_normal_slide: normal.map(|r| r.found_lesions).sum::<usize>() as f64
            / normal_count.max(1) as f64,
        false_lesions_per_slide: results.iter().map(|r| r.false_lesions).sum::<usize>() as f64
            / n.max(1) as f64,
        false_lesion_patches: {
            let mut patches: Vec<(String, usize)> = false_patches.into_iter().collect();
            patches.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            patches
        },
        category_accuracy: (0..4).map(|k| confusion[k][k]).sum::<usize>() as f64 / n.max(1) as f64,
        category_confusion: confusion,
        hysteresis: model.hysteresis,
        stride: scored.stride,
        mode: scored.mode,
        median_seconds: seconds.get(n / 2).copied().unwrap_or(0.0),
        slides: results,
    })
}
