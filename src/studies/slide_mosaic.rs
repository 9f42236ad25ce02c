//! Synthetic slides with known lesions, built from whole PCam patches, and the slide-level
//! evaluation of the paper (Camelyon16's slide AUC and FROC) on them.
//!
//! Camelyon16 is not public here. A synthetic slide is a grid of 96x96 PCam patches at the
//! model's scale: label-0 patches for normal tissue, one to a few contiguous clusters of
//! label-1 patches for lesions on tumour slides, and a blob of bare glass so that tissue
//! detection matters. The lesion mask is exact at patch level.

use std::collections::HashSet;
use std::path::Path;
use std::rc::Rc;

use image::{GrayImage, Rgb, RgbImage};
use rand::seq::IndexedRandom;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, FileContext, Result};
use crate::input::{decode_image, read_gray_image, read_image, save_image};
use crate::metrics::{Detection, Froc, auc, froc};
use crate::network::classifier::Classifier;
use crate::network::model::GLIMPSE;
use crate::slide::file::resolution::file_resolution;
use crate::slide::heatmap::SlideScores;
use crate::slide::scale::MODEL_MPP;
use crate::slide::scan::{Mode, ScanConfig};
use crate::slide::{Analysis, OpenedImage};
use crate::studies::glimpse_mosaic::class_pools;
use crate::train::data::Half;

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
}

impl Default for SlideMosaicOptions {
    fn default() -> Self {
        Self {
            n: 20,
            seed: 1,
            grid: 12,
            tumour_share: 0.5,
            max_lesions: 3,
            max_lesion_patches: 4,
            glass_share: 0.15,
            part: (1, 1),
            half: None,
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
fn grow_blob(free: &HashSet<usize>, grid: usize, count: usize, rng: &mut impl Rng) -> Vec<usize> {
    let seeds: Vec<usize> = free.iter().copied().collect::<Vec<_>>();
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
    let (normal, tumour) = class_pools(split, options.part, options.half)?;
    std::fs::create_dir_all(out).map_err(|e| CelnetError::io(out, e))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let grid = options.grid;
    let cells = grid * grid;
    let side = (grid * GLIMPSE) as u32;
    let mut slides = Vec::with_capacity(options.n);
    for index in 0..options.n {
        let mut free: HashSet<usize> = (0..cells).collect();
        let glass_count = (options.glass_share * cells as f64).round() as usize;
        let glass_cells = grow_blob(&free, grid, glass_count, &mut rng);
        for c in &glass_cells {
            free.remove(c);
        }
        let mut lesions = Vec::new();
        if rng.random_bool(options.tumour_share.clamp(0.0, 1.0)) {
            for _ in 0..rng.random_range(1..=options.max_lesions) {
                let size = rng.random_range(1..=options.max_lesion_patches.max(1));
                let lesion = grow_blob(&free, grid, size, &mut rng);
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
            }
        }
        let mut slide = RgbImage::from_pixel(side, side, Rgb(GLASS));
        let mut mask = GrayImage::new(side, side);
        let lesion_of = |c: usize| lesions.iter().position(|l| l.contains(&c));
        for c in 0..cells {
            if glass_cells.contains(&c) {
                continue;
            }
            let lesion = lesion_of(c);
            let pool = if lesion.is_some() { &tumour } else { &normal };
            let path = pool.choose(&mut rng).expect("pools are not empty");
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
            lesions,
            glass_cells,
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

/// One slide's result.
#[derive(Clone, Debug, Serialize)]
pub struct SlideResult {
    pub image: String,
    pub lesions: usize,
    /// The highest window probability (0 without tissue).
    pub score: f32,
    /// Other slide scores of the same heatmap.
    pub scores: SlideScores,
    pub points: usize,
    pub true_points: usize,
}

/// Slide AUC and FROC over a folder of synthetic slides.
#[derive(Clone, Debug, Serialize)]
pub struct SlideEvaluation {
    pub n: usize,
    pub tumour_slides: usize,
    pub lesions: usize,
    /// AUC of the slide score against "has a lesion"; `None` with one class only.
    pub auc: Option<f64>,
    /// AUC of each slide score of [`SlideScores`].
    pub auc_by_score: std::collections::BTreeMap<String, Option<f64>>,
    pub froc: f64,
    /// Sensitivity by average false positives per slide (`"0.25"` to `"8"`).
    pub sensitivity_at_fp: std::collections::BTreeMap<String, f64>,
    pub stride: usize,
    pub mode: Mode,
    pub slides: Vec<SlideResult>,
}

/// Scores every slide of a folder made by [`build`] as `config` says (through the same
/// [`Analysis`] as `celnet heatmap`) and evaluates the slide scores and tumour points against
/// the lesion masks. `progress(done, total)` follows slides.
pub fn evaluate_slides(
    classifier: &Classifier,
    dir: &Path,
    config: &ScanConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<SlideEvaluation> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| CelnetError::io(&path, e))?;
    let manifest: SlideManifest = serde_json::from_str(&text).map_err(|e| {
        CelnetError::Dataset(format!("{}: not a slide manifest: {e}", path.display()))
    })?;
    let mut detections = Vec::new();
    let mut results = Vec::new();
    let mut lesion_base = 0;
    for (s, entry) in manifest.slides.iter().enumerate() {
        let image_path = dir.join(&entry.image);
        let bytes = std::fs::read(&image_path).map_err(|e| CelnetError::io(&image_path, e))?;
        let image = decode_image(&bytes).in_file(&image_path)?;
        let mask = read_mask(&dir.join(&entry.mask), image.dimensions())?;
        let input = OpenedImage::<std::io::Empty>::decoded(image, file_resolution(&bytes));
        let mut analysis =
            Analysis::new(Rc::new(input), None, None, *config).in_file(&image_path)?;
        pollster::block_on(analysis.run(classifier, |_, _| {}))?;
        let heatmap = analysis.heatmap();
        let points = analysis.points();
        let mut true_points = 0;
        for p in &points {
            let (x, y) = (p.x as u32, p.y as u32);
            let value = mask.get_pixel_checked(x, y).map_or(0, |v| v.0[0]);
            let lesion = (value > 0).then(|| lesion_base + usize::from(value) - 1);
            true_points += usize::from(lesion.is_some());
            detections.push(Detection {
                slide: s,
                score: p.probability,
                lesion,
            });
        }
        lesion_base += entry.lesions.len();
        results.push(SlideResult {
            image: entry.image.clone(),
            lesions: entry.lesions.len(),
            score: heatmap.slide_score().unwrap_or(0.0),
            scores: heatmap.slide_scores(),
            points: points.len(),
            true_points,
        });
        progress(s + 1, manifest.slides.len());
    }
    let scores: Vec<f32> = results.iter().map(|r| r.score).collect();
    let labels: Vec<u8> = results.iter().map(|r| u8::from(r.lesions > 0)).collect();
    let Froc {
        sensitivity_at_fp,
        score,
    } = froc(&detections, lesion_base, results.len());
    Ok(SlideEvaluation {
        n: results.len(),
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
        froc: score,
        sensitivity_at_fp: sensitivity_at_fp
            .into_iter()
            .map(|(rate, sensitivity)| (rate.to_string(), sensitivity))
            .collect(),
        stride: config.stride,
        mode: config.mode,
        slides: results,
    })
}

fn read_mask(path: &Path, size: (u32, u32)) -> Result<GrayImage> {
    let mask = read_gray_image(path)?;
    if mask.dimensions() != size {
        return Err(CelnetError::MaskSize {
            name: path.display().to_string(),
            mask: (mask.width() as usize, mask.height() as usize),
            image: (size.0 as usize, size.1 as usize),
        });
    }
    Ok(mask)
}
