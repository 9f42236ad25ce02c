//! Images larger than a glimpse: tissue detection, a grid of 96x96 windows at the model's scale,
//! the probability of each window, the slide score and tumour points (the paper's slide
//! pipeline: heatmap, maximum, non-maximum suppression).
//!
//! Everything here works in model-scale pixels (see [`crate::scale`]); callers map results back
//! to the original image with the scale factor.

use burn::prelude::*;
use image::RgbImage;
use image::imageops::FilterType;
use serde::Serialize;

use crate::classifier::{Classifier, DECISION_THRESHOLD, sigmoid};
use crate::error::{CelnetError, Result};
use crate::explain::{CelmParams, Explainer, Explanation, PreparedEvidence};
use crate::input::{check_size, normalise, to_tensor_data};
use crate::model::GLIMPSE;

/// Default distance between window positions, in model-scale pixels: a third of a window, the
/// best slide FROC of the strides measured with the dense pass (README, Slides).
pub const DEFAULT_STRIDE: usize = 32;
/// Strides offered: from a quarter of the receptive field to plain tiling.
pub const STRIDES: std::ops::RangeInclusive<usize> = 16..=96;
/// Largest tile side, in model-scale pixels, of the dense pass: big enough that the overlap
/// between tiles (96 - stride px) is a few percent of the work, small enough that a tile's
/// activations stay around a hundred megabytes whatever the image size.
pub const DENSE_TILE: usize = 1024;
/// Context the dense pass gives each tile on every side where the image has it, model-scale
/// px (rounded up to whole strides): the tile's border windows see and attend to neighbours as
/// they would inside a larger tile, so tile seams do not show in the heatmap.
pub const DENSE_CONTEXT: usize = 64;

/// How window probabilities are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Tiles of windows in one fully convolutional pass each ([`Heatmap::dense`]).
    Dense,
    /// Every window cropped and scored on its own ([`Heatmap::exact`]).
    Exact,
}

/// Largest image analysed, in model-scale pixels: a 75 x 25 mm glass slide at the model's scale
/// is about 2 G pixels. Bounds the thumbnail (at most 1/64 of this), the tissue mask and the
/// window table.
pub const MAX_ANALYSED_PIXELS: u64 = 1 << 32;

/// Largest side of the thumbnail an analysis keeps (for tissue detection and pictures), unless
/// tissue cells need more.
pub const THUMBNAIL_SIDE: usize = 2048;

/// An image at the model's scale, read region by region: an image in memory, or a slide read
/// tile by tile from its file ([`crate::slide::ScaledSlide`]), so that a heatmap never needs
/// the whole image in memory.
pub trait ModelScaleImage {
    /// Width and height in model-scale pixels.
    fn dimensions(&self) -> (usize, usize);

    /// The `width` x `height` px at `(x, y)`; the rectangle lies inside the image.
    fn region(&self, x: usize, y: usize, width: usize, height: usize) -> Result<RgbImage>;

    /// The whole image shrunk to `width` x `height` px, every source pixel averaged in.
    fn thumbnail(&self, width: u32, height: u32) -> Result<RgbImage>;
}

impl ModelScaleImage for RgbImage {
    fn dimensions(&self) -> (usize, usize) {
        (self.width() as usize, self.height() as usize)
    }

    fn region(&self, x: usize, y: usize, width: usize, height: usize) -> Result<RgbImage> {
        let (x, y, w, h) = (x as u32, y as u32, width as u32, height as u32);
        Ok(image::imageops::crop_imm(self, x, y, w, h).to_image())
    }

    fn thumbnail(&self, width: u32, height: u32) -> Result<RgbImage> {
        Ok(image::imageops::resize(
            self,
            width,
            height,
            FilterType::Triangle,
        ))
    }
}

/// Side, in model-scale pixels, of one cell of the tissue mask.
pub const TISSUE_CELL: u32 = 8;
/// Saturation thresholds tissue detection may use: Otsu's threshold, held in this range so that
/// an image of tissue only (one mode) is not split in two and faint eosin is not lost.
pub const TISSUE_THRESHOLD: std::ops::RangeInclusive<f32> = 0.05..=0.15;

/// Where the tissue is: HSV saturation of a low-resolution copy above an Otsu threshold. Glass,
/// white background and grey pen-free blanks have almost no saturation; H&E-stained tissue has.
#[derive(Clone, Debug)]
pub struct TissueMask {
    /// Cells across and down; a cell covers [`TISSUE_CELL`] x [`TISSUE_CELL`] model-scale px.
    pub cols: usize,
    pub rows: usize,
    pub data: Vec<bool>,
    /// The saturation threshold used.
    pub threshold: f32,
}

impl TissueMask {
    /// The mask of a model-scale image.
    pub fn of(image: &RgbImage) -> TissueMask {
        Self::from_thumbnail(image, image.width() as usize, image.height() as usize)
    }

    /// The mask of a `width` x `height` model-scale image from a copy of it at any size at
    /// least one pixel per cell.
    pub fn from_thumbnail(thumbnail: &RgbImage, width: usize, height: usize) -> TissueMask {
        let cols = (width as u32).div_ceil(TISSUE_CELL).max(1);
        let rows = (height as u32).div_ceil(TISSUE_CELL).max(1);
        let small = image::imageops::resize(thumbnail, cols, rows, FilterType::Triangle);
        let saturation: Vec<f32> = small
            .pixels()
            .map(|p| {
                let max = f32::from(*p.0.iter().max().expect("three channels"));
                let min = f32::from(*p.0.iter().min().expect("three channels"));
                if max == 0.0 { 0.0 } else { (max - min) / max }
            })
            .collect();
        let threshold = otsu(&saturation).clamp(*TISSUE_THRESHOLD.start(), *TISSUE_THRESHOLD.end());
        TissueMask {
            cols: cols as usize,
            rows: rows as usize,
            data: saturation.iter().map(|&s| s >= threshold).collect(),
            threshold,
        }
    }

    /// Whether the model-scale pixel `(x, y)` lies in tissue.
    pub fn contains(&self, x: usize, y: usize) -> bool {
        let (c, r) = (x / TISSUE_CELL as usize, y / TISSUE_CELL as usize);
        c < self.cols && r < self.rows && self.data[r * self.cols + c]
    }

    /// Share of the image that is tissue.
    pub fn fraction(&self) -> f64 {
        self.data.iter().filter(|&&t| t).count() as f64 / self.data.len().max(1) as f64
    }
}

/// Otsu's threshold of values in [0, 1] (256 bins): the split with the largest between-class
/// variance.
pub fn otsu(values: &[f32]) -> f32 {
    let mut histogram = [0u64; 256];
    for &v in values {
        histogram[(v.clamp(0.0, 1.0) * 255.0).round() as usize] += 1;
    }
    let total = values.len() as f64;
    let sum: f64 = histogram
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut weight_low, mut sum_low) = (0.0, 0.0);
    let (mut best, mut best_variance) = (0usize, -1.0);
    for (i, &n) in histogram.iter().enumerate() {
        weight_low += n as f64;
        sum_low += i as f64 * n as f64;
        let weight_high = total - weight_low;
        if weight_low == 0.0 || weight_high == 0.0 {
            continue;
        }
        let mean_low = sum_low / weight_low;
        let mean_high = (sum - sum_low) / weight_high;
        let variance = weight_low * weight_high * (mean_low - mean_high).powi(2);
        if variance > best_variance {
            best_variance = variance;
            best = i;
        }
    }
    // Values at or above the boundary between bin `best` and the next are "high".
    (best as f32 + 0.5) / 255.0
}

/// Window positions: top-left corners `(col * stride, row * stride)` of 96x96 windows that fit in
/// the model-scale image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Grid {
    pub stride: usize,
    pub cols: usize,
    pub rows: usize,
}

impl Grid {
    /// The grid over a `width` x `height` model-scale image.
    pub fn new(width: usize, height: usize, stride: usize) -> Result<Grid> {
        if !STRIDES.contains(&stride) {
            return Err(CelnetError::InvalidParameter(format!(
                "the stride must be {} to {} px at the model's scale, got {stride}",
                STRIDES.start(),
                STRIDES.end()
            )));
        }
        if width < GLIMPSE || height < GLIMPSE {
            return Err(CelnetError::ImageTooSmall {
                width: width as u32,
                height: height as u32,
                min: GLIMPSE as u32,
            });
        }
        Ok(Grid {
            stride,
            cols: (width - GLIMPSE) / stride + 1,
            rows: (height - GLIMPSE) / stride + 1,
        })
    }

    /// The top-left corner of window `(col, row)`.
    pub fn origin(&self, col: usize, row: usize) -> (usize, usize) {
        (col * self.stride, row * self.stride)
    }

    /// The centre of window `(col, row)`.
    pub fn centre(&self, col: usize, row: usize) -> (usize, usize) {
        let (x, y) = self.origin(col, row);
        (x + GLIMPSE / 2, y + GLIMPSE / 2)
    }

    /// Whether window `(col, row)` is scored: its centre lies in tissue.
    pub fn in_tissue(&self, tissue: &TissueMask, col: usize, row: usize) -> bool {
        let (x, y) = self.centre(col, row);
        tissue.contains(x, y)
    }

    /// Index of window `(col, row)` in row-major order.
    pub fn index(&self, col: usize, row: usize) -> usize {
        row * self.cols + col
    }
}

/// One tile of the dense pass: a block of grid windows scored together, and the crop of the
/// model-scale image the pass reads for them (the windows plus context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DenseTile {
    /// The tile's first window and how many it holds across and down.
    pub col: usize,
    pub row: usize,
    pub cols: usize,
    pub rows: usize,
    /// Top-left corner and size of the crop, model-scale px.
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
    /// Tissue windows the tile scores.
    pub windows: usize,
    /// Where the tile's windows start among the crop's windows (`crop_cols` across).
    context_col: usize,
    context_row: usize,
    crop_cols: usize,
    crop_rows: usize,
}

/// The dense pass cut into tiles that are scored one at a time, in any order and on any
/// device (the page spreads them over workers), then gathered into a [`Heatmap`]. Tiles of up
/// to `tile` px overlap by `96 - stride` px so that every window lies whole in one tile, and
/// each carries [`DENSE_CONTEXT`] px of context around its windows; tiles without a tissue
/// window are left out.
#[derive(Clone, Debug)]
pub struct DenseScan {
    grid: Grid,
    in_tissue: Vec<bool>,
    tiles: Vec<DenseTile>,
    probabilities: Vec<Option<f32>>,
}

impl DenseScan {
    pub fn new(grid: Grid, tissue: &TissueMask, tile: usize) -> Result<DenseScan> {
        if !grid.stride.is_multiple_of(4) {
            return Err(CelnetError::InvalidParameter(format!(
                "dense scoring needs a stride divisible by 4 (the network halves the image \
                 twice), got {}; choose another stride or score exactly",
                grid.stride
            )));
        }
        let in_tissue: Vec<bool> = (0..grid.rows)
            .flat_map(|r| (0..grid.cols).map(move |c| (c, r)))
            .map(|(c, r)| grid.in_tissue(tissue, c, r))
            .collect();
        let per_tile = tile.saturating_sub(GLIMPSE) / grid.stride + 1;
        let context = DENSE_CONTEXT.div_ceil(grid.stride);
        let span = |windows: usize| (windows - 1) * grid.stride + GLIMPSE;
        let mut tiles = Vec::new();
        for row in (0..grid.rows).step_by(per_tile) {
            for col in (0..grid.cols).step_by(per_tile) {
                let (cols, rows) = (per_tile.min(grid.cols - col), per_tile.min(grid.rows - row));
                let windows = (row..row + rows)
                    .flat_map(|r| (col..col + cols).map(move |c| (c, r)))
                    .filter(|&(c, r)| in_tissue[grid.index(c, r)])
                    .count();
                if windows == 0 {
                    continue;
                }
                // Up to `context` more windows of the grid around the tile's: context for its
                // border windows, which see and attend to their neighbours as they would in any
                // other tile.
                let (col0, row0) = (col.saturating_sub(context), row.saturating_sub(context));
                let (col1, row1) = (
                    (col + cols + context).min(grid.cols),
                    (row + rows + context).min(grid.rows),
                );
                let (x, y) = grid.origin(col0, row0);
                tiles.push(DenseTile {
                    col,
                    row,
                    cols,
                    rows,
                    x,
                    y,
                    width: span(col1 - col0),
                    height: span(row1 - row0),
                    windows,
                    context_col: col - col0,
                    context_row: row - row0,
                    crop_cols: col1 - col0,
                    crop_rows: row1 - row0,
                });
            }
        }
        Ok(DenseScan {
            grid,
            in_tissue,
            probabilities: vec![None; grid.cols * grid.rows],
            tiles,
        })
    }

    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// The tiles, in reading order.
    pub fn tiles(&self) -> &[DenseTile] {
        &self.tiles
    }

    /// Tissue windows over all tiles.
    pub fn total(&self) -> usize {
        self.tiles.iter().map(|t| t.windows).sum()
    }

    /// The crop of `image` (model scale) that tile `index` scores.
    pub fn crop(&self, image: &(impl ModelScaleImage + ?Sized), index: usize) -> Result<RgbImage> {
        let t = self.tile(index)?;
        image.region(t.x, t.y, t.width, t.height)
    }

    /// Takes the window logits of tile `index`'s crop ([`Classifier::window_logits`] at the
    /// grid's stride, row-major) and keeps the probabilities of the tile's tissue windows.
    /// Returns the number of windows it scored.
    pub fn accept(&mut self, index: usize, logits: &[f32]) -> Result<usize> {
        let t = *self.tile(index)?;
        if logits.len() != t.crop_cols * t.crop_rows {
            return Err(CelnetError::InvalidParameter(format!(
                "tile {index} has {}x{} windows, got {} logits",
                t.crop_cols,
                t.crop_rows,
                logits.len()
            )));
        }
        for r in 0..t.rows {
            for c in 0..t.cols {
                let i = self.grid.index(t.col + c, t.row + r);
                if self.in_tissue[i] {
                    let logit = logits[(r + t.context_row) * t.crop_cols + c + t.context_col];
                    self.probabilities[i] = Some(sigmoid(logit));
                }
            }
        }
        Ok(t.windows)
    }

    /// Crops, scores and keeps tile `index`; returns its window count.
    pub async fn score(
        &mut self,
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        index: usize,
    ) -> Result<usize> {
        let crop = self.crop(image, index)?;
        let input = Tensor::<4>::from_data(to_tensor_data(&crop), classifier.device());
        let logits = classifier.window_logits(input, self.grid.stride).await?;
        self.accept(index, &logits)
    }

    /// Window probabilities so far, row-major over the grid; `None` for windows not scored
    /// (background, or in tiles not yet accepted).
    pub fn probabilities(&self) -> &[Option<f32>] {
        &self.probabilities
    }

    /// The heatmap so far: windows of tiles not yet accepted are `None`.
    pub fn heatmap(&self) -> Heatmap {
        Heatmap {
            grid: self.grid,
            probabilities: self.probabilities.clone(),
        }
    }

    pub fn into_heatmap(self) -> Heatmap {
        Heatmap {
            grid: self.grid,
            probabilities: self.probabilities,
        }
    }

    fn tile(&self, index: usize) -> Result<&DenseTile> {
        self.tiles.get(index).ok_or_else(|| {
            CelnetError::InvalidParameter(format!(
                "no tile {index}: the scan has {}",
                self.tiles.len()
            ))
        })
    }
}

/// The probability of every window on a grid; `None` where the window's centre is background.
#[derive(Clone, Debug)]
pub struct Heatmap {
    pub grid: Grid,
    pub probabilities: Vec<Option<f32>>,
}

/// Ways to sum a heatmap up in one slide score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SlideScores {
    /// The highest window probability: the paper's slide score.
    pub max: f32,
    /// The mean of the five highest: one stray window weighs less.
    pub top5_mean: f32,
    /// The share of scored windows called metastatic: how much of the tissue.
    pub tumour_share: f32,
}

impl SlideScores {
    /// The scores' names, in the order of [`SlideScores::values`].
    pub const NAMES: [&'static str; 3] = ["max", "top5_mean", "tumour_share"];

    pub fn values(&self) -> [f32; 3] {
        [self.max, self.top5_mean, self.tumour_share]
    }
}

/// A local maximum of the heatmap, in model-scale pixels (a window centre).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub probability: f32,
}

impl Heatmap {
    /// Scores each tissue window of `image` (model scale) separately, `batch` at a time: the
    /// reference every faster path is compared with. `progress(done, total)` follows batches.
    pub async fn exact(
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        grid: Grid,
        tissue: &TissueMask,
        batch: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Heatmap> {
        let cells: Vec<(usize, usize)> = (0..grid.rows)
            .flat_map(|r| (0..grid.cols).map(move |c| (c, r)))
            .collect();
        let kept: Vec<usize> = (0..cells.len())
            .filter(|&i| grid.in_tissue(tissue, cells[i].0, cells[i].1))
            .collect();
        let mut probabilities = vec![None; cells.len()];
        for (done, chunk) in kept.chunks(batch.max(1)).enumerate() {
            let mut values = Vec::with_capacity(chunk.len() * 3 * GLIMPSE * GLIMPSE);
            for &i in chunk {
                let (x, y) = grid.origin(cells[i].0, cells[i].1);
                values.extend(normalise(&image.region(x, y, GLIMPSE, GLIMPSE)?));
            }
            let x = Tensor::<4>::from_data(
                TensorData::new(values, [chunk.len(), 3, GLIMPSE, GLIMPSE]),
                classifier.device(),
            );
            for (&i, logit) in chunk.iter().zip(classifier.logits(x).await?) {
                probabilities[i] = Some(sigmoid(logit));
            }
            progress(
                (done * batch.max(1) + chunk.len()).min(kept.len()),
                kept.len(),
            );
        }
        Ok(Heatmap {
            grid,
            probabilities,
        })
    }

    /// Scores the tissue windows of `image` (model scale) tile by tile ([`DenseScan`]), each
    /// tile of up to [`DENSE_TILE`] px in one fully convolutional pass
    /// ([`crate::model::Celnet::forward_windows`]). `progress(done, total)` counts windows.
    pub async fn dense(
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        grid: Grid,
        tissue: &TissueMask,
        progress: impl FnMut(usize, usize),
    ) -> Result<Heatmap> {
        Self::dense_tiled(classifier, image, grid, tissue, DENSE_TILE, progress).await
    }

    /// [`Heatmap::dense`] with tiles of up to `tile` px a side (at least one window): smaller
    /// tiles report progress more often and need less memory, larger ones repeat less overlap.
    pub async fn dense_tiled(
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        grid: Grid,
        tissue: &TissueMask,
        tile: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Heatmap> {
        let mut scan = DenseScan::new(grid, tissue, tile)?;
        let total = scan.total();
        let mut done = 0;
        for index in 0..scan.tiles().len() {
            done += scan.score(classifier, image, index).await?;
            progress(done, total);
        }
        Ok(scan.into_heatmap())
    }

    /// Windows scored (in tissue).
    pub fn scored(&self) -> usize {
        self.probabilities.iter().flatten().count()
    }

    /// The probability of window `(col, row)`.
    pub fn get(&self, col: usize, row: usize) -> Option<f32> {
        self.probabilities[self.grid.index(col, row)]
    }

    /// The slide score: the highest window probability (`None` without tissue).
    pub fn slide_score(&self) -> Option<f32> {
        self.probabilities
            .iter()
            .flatten()
            .copied()
            .reduce(f32::max)
    }

    /// Every slide score this crate knows, for comparing them; zeros without tissue.
    pub fn slide_scores(&self) -> SlideScores {
        let mut p: Vec<f32> = self.probabilities.iter().flatten().copied().collect();
        p.sort_by(|a, b| b.total_cmp(a));
        let top = &p[..p.len().min(5)];
        SlideScores {
            max: p.first().copied().unwrap_or(0.0),
            top5_mean: top.iter().sum::<f32>() / top.len().max(1) as f32,
            tumour_share: p.iter().filter(|&&v| v >= DECISION_THRESHOLD).count() as f32
                / p.len().max(1) as f32,
        }
    }

    /// Tumour points by non-maximum suppression: windows at or above `min_probability`, taken
    /// from the most probable down, each kept unless a kept point lies within `radius`
    /// model-scale pixels.
    pub fn points(&self, radius: f64, min_probability: f32) -> Vec<Point> {
        let mut candidates: Vec<Point> = (0..self.grid.rows)
            .flat_map(|r| (0..self.grid.cols).map(move |c| (c, r)))
            .filter_map(|(c, r)| {
                let p = self.get(c, r)?;
                let (x, y) = self.grid.centre(c, r);
                (p >= min_probability).then_some(Point {
                    x: x as f64,
                    y: y as f64,
                    probability: p,
                })
            })
            .collect();
        candidates.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let mut kept: Vec<Point> = Vec::new();
        for candidate in candidates {
            let near = |k: &Point| (k.x - candidate.x).hypot(k.y - candidate.y) < radius;
            if !kept.iter().any(near) {
                kept.push(candidate);
            }
        }
        kept
    }

    /// Default suppression: points closer than one window are the same finding.
    pub fn tumour_points(&self) -> Vec<Point> {
        self.points(GLIMPSE as f64, DECISION_THRESHOLD)
    }
}

/// What is known of an image before any window is scored: its grid, a thumbnail and where
/// the tissue is.
#[derive(Clone, Debug)]
pub struct Survey {
    pub grid: Grid,
    /// The image shrunk to at most [`THUMBNAIL_SIDE`] px a side (more where tissue cells need
    /// it), for tissue detection and pictures.
    pub thumbnail: RgbImage,
    pub tissue: TissueMask,
}

impl Survey {
    /// The grid at `stride` over `image` (model scale), its thumbnail and its tissue.
    pub fn new(image: &(impl ModelScaleImage + ?Sized), stride: usize) -> Result<Survey> {
        let (width, height) = image.dimensions();
        // The grid first: it names the smallest size that can be scored (one window).
        let grid = Grid::new(width, height, stride)?;
        check_size(
            width.try_into().unwrap_or(u32::MAX),
            height.try_into().unwrap_or(u32::MAX),
            MAX_ANALYSED_PIXELS,
            "largest image analysed, at the model's scale",
        )?;
        let shrink = (THUMBNAIL_SIDE as f64 / width.max(height) as f64)
            .clamp(1.0 / f64::from(TISSUE_CELL), 1.0);
        let side = |v: usize| ((v as f64 * shrink).round() as u32).max(1);
        let thumbnail = image.thumbnail(side(width), side(height))?;
        let tissue = TissueMask::from_thumbnail(&thumbnail, width, height);
        Ok(Survey {
            grid,
            thumbnail,
            tissue,
        })
    }
}

/// An image analysed at the model's scale: a thumbnail of it, its tissue and its heatmap.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// See [`Survey::thumbnail`].
    pub thumbnail: RgbImage,
    pub tissue: TissueMask,
    pub heatmap: Heatmap,
}

impl Analysis {
    /// Finds the tissue of `image` (at the model's scale) and scores every tissue window at
    /// `stride` the way `mode` says (exact scoring takes `batch` windows at a time).
    pub async fn new(
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        stride: usize,
        mode: Mode,
        batch: usize,
        progress: impl FnMut(usize, usize),
    ) -> Result<Analysis> {
        let Survey {
            grid,
            thumbnail,
            tissue,
        } = Survey::new(image, stride)?;
        let heatmap = match mode {
            Mode::Dense => Heatmap::dense(classifier, image, grid, &tissue, progress).await?,
            Mode::Exact => {
                Heatmap::exact(classifier, image, grid, &tissue, batch, progress).await?
            }
        };
        Ok(Analysis {
            thumbnail,
            tissue,
            heatmap,
        })
    }
}

/// CELM of one window of a heatmap.
#[derive(Clone, Debug)]
pub struct WindowEvidence {
    /// Top-left corner of the 96x96 window, model-scale pixels.
    pub origin: (usize, usize),
    /// The window itself.
    pub image: RgbImage,
    pub explanation: Explanation,
}

impl WindowEvidence {
    /// The window of `image` (model scale) centred as near `point` as the image allows.
    pub fn crop(
        image: &(impl ModelScaleImage + ?Sized),
        point: &Point,
    ) -> Result<((usize, usize), RgbImage)> {
        let (width, height) = image.dimensions();
        if width < GLIMPSE || height < GLIMPSE {
            return Err(CelnetError::ImageTooSmall {
                width: width as u32,
                height: height as u32,
                min: GLIMPSE as u32,
            });
        }
        // Rounded, not truncated: a point that went to the input's pixels and back (the page
        // asks for a window by input coordinates) may land a hair below a whole pixel.
        let half = (GLIMPSE / 2) as f64;
        let x = ((point.x - half).max(0.0).round() as usize).min(width - GLIMPSE);
        let y = ((point.y - half).max(0.0).round() as usize).min(height - GLIMPSE);
        Ok(((x, y), image.region(x, y, GLIMPSE, GLIMPSE)?))
    }

    /// CELM of the windows centred on `points` (for instance the top tumour points).
    pub async fn explain_points(
        explainer: &Explainer,
        image: &(impl ModelScaleImage + ?Sized),
        points: &[Point],
        params: &CelmParams,
    ) -> Result<Vec<WindowEvidence>> {
        params.validate()?;
        let mut out = Vec::with_capacity(points.len());
        for point in points {
            let (origin, window) = Self::crop(image, point)?;
            out.push(Self::explain(explainer, origin, window, params).await?);
        }
        Ok(out)
    }

    /// CELM of `window`, a crop whose top-left corner is `origin`.
    pub async fn explain(
        explainer: &Explainer,
        origin: (usize, usize),
        window: RgbImage,
        params: &CelmParams,
    ) -> Result<WindowEvidence> {
        let evidence = explainer.evidence(&window).await?;
        let explanation = PreparedEvidence::new(evidence, &[params.sigma]).fuse_checked(params);
        Ok(WindowEvidence {
            origin,
            image: window,
            explanation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_splits_two_modes() {
        let mut values = vec![0.02f32; 600];
        values.extend(vec![0.6f32; 400]);
        let t = otsu(&values);
        assert!(t > 0.02 && t <= 0.6, "{t}");
    }

    #[test]
    fn glass_is_not_tissue_and_stain_is() {
        // Left half white glass, right half H&E pink-purple.
        let image = RgbImage::from_fn(192, 96, |x, _| {
            image::Rgb(if x < 96 {
                [243, 243, 241]
            } else {
                [180, 90, 170]
            })
        });
        let tissue = TissueMask::of(&image);
        assert!(!tissue.contains(40, 40));
        assert!(tissue.contains(150, 40));
        assert!(
            (tissue.fraction() - 0.5).abs() < 0.1,
            "{}",
            tissue.fraction()
        );
        // Tissue only: the threshold stays low enough to keep it all.
        let stained = RgbImage::from_fn(96, 96, |x, y| {
            image::Rgb([170 + (x % 7) as u8, 80 + (y % 11) as u8, 160])
        });
        assert_eq!(TissueMask::of(&stained).fraction(), 1.0);
    }

    /// An image that only has a size: reading it would be a bug.
    struct Claimed(usize, usize);

    impl ModelScaleImage for Claimed {
        fn dimensions(&self) -> (usize, usize) {
            (self.0, self.1)
        }
        fn region(&self, _: usize, _: usize, _: usize, _: usize) -> Result<RgbImage> {
            unreachable!("a region was read")
        }
        fn thumbnail(&self, _: u32, _: u32) -> Result<RgbImage> {
            unreachable!("a thumbnail was made")
        }
    }

    #[test]
    fn images_beyond_any_slide_are_refused_before_anything_is_read() {
        let device = Device::flex();
        let classifier = Classifier::new(crate::weights::load_default(&device).unwrap(), &device);
        let analysis = pollster::block_on(Analysis::new(
            &classifier,
            &Claimed(300_000, 300_000),
            32,
            Mode::Dense,
            64,
            |_, _| {},
        ));
        let message = analysis.unwrap_err().to_string();
        assert!(message.contains("largest image analysed"), "{message}");
    }

    #[test]
    fn grid_fits_whole_windows() {
        let grid = Grid::new(200, 96, 48).unwrap();
        assert_eq!((grid.cols, grid.rows), (3, 1));
        assert_eq!(grid.origin(2, 0), (96, 0));
        assert_eq!(grid.centre(0, 0), (48, 48));
        assert!(Grid::new(95, 200, 48).is_err());
        assert!(Grid::new(200, 200, 8).is_err());
    }

    #[test]
    fn suppression_keeps_one_point_per_peak() {
        // 5x1 windows at stride 16: two peaks (columns 1 and 4) and a shoulder next to the first.
        let heatmap = Heatmap {
            grid: Grid {
                stride: 16,
                cols: 5,
                rows: 1,
            },
            probabilities: vec![Some(0.2), Some(0.9), Some(0.8), None, Some(0.7)],
        };
        let points = heatmap.points(40.0, 0.5);
        let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
        // Column 2 (x = 80) is 16 px from the peak at x = 64: suppressed. Column 4 (x = 112) is
        // 48 px away: kept.
        assert_eq!(xs, vec![64.0, 112.0]);
        assert_eq!(heatmap.slide_score(), Some(0.9));
        let scores = heatmap.slide_scores();
        assert_eq!(scores.max, 0.9);
        assert!((scores.top5_mean - (0.9 + 0.8 + 0.7 + 0.2) / 4.0).abs() < 1e-6);
        assert_eq!(scores.tumour_share, 0.75);
        assert_eq!(heatmap.scored(), 4);
        assert!(heatmap.points(40.0, 0.95).is_empty());
    }
}
