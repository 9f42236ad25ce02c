//! Scoring the tissue windows of a model-scale image: the dense pass cut into tiles that are
//! scored in any order and on any device (the page spreads them over workers), or every window
//! cropped and scored on its own (the reference every faster path is compared with).

use image::RgbImage;
use serde::Serialize;

use crate::error::{CelnetError, Result};
use crate::input::check_size;
use crate::network::active_area::{ActiveArea, KeptWindows};
use crate::network::classifier::{Classifier, Tta, sigmoid};
use crate::network::model::GLIMPSE;
use crate::network::pooling::DenseWindows;
use crate::slide::grid::{DEFAULT_STRIDE, WindowGrid};
use crate::slide::heatmap::Heatmap;
use crate::slide::image::ModelScaleImage;
use crate::slide::tiling::tissue_blocks;
use crate::slide::tissue::{TISSUE_CELL, TissueMask};

/// Largest tile side, in model-scale pixels, of the dense pass: big enough that the overlap
/// between tiles (96 - stride px) is a few percent of the work, small enough that a tile's
/// activations stay around a hundred megabytes whatever the image size.
pub const DENSE_TILE: usize = 1024;
/// Largest tile side of the page's dense pass, model-scale px (an 896 px crop with its context):
/// each scoring worker holds one tile's activations in its own WebAssembly memory, which never
/// shrinks, and three 16-channel maps of a [`DENSE_TILE`] crop alone take 255 MB; at this side
/// an instance stays under 200 MB. Where tissue is scattered a smaller tile computes about as
/// many pixels (less glass, more halo); on solid tissue about 1.1x.
pub const PAGE_TILE: usize = 768;
/// Context the dense pass gives each tile on every side where the image has it, model-scale
/// px (rounded up to whole strides): the tile's border windows see and attend to neighbours as
/// they would inside a larger tile, so tile seams do not show in the heatmap.
pub const DENSE_CONTEXT: usize = 64;
/// Windows scored per batch when scoring exactly.
pub const EXACT_BATCH: usize = 64;

/// Largest image analysed, in model-scale pixels: a 75 x 25 mm glass slide at the model's scale
/// is about 2 G pixels. Bounds the thumbnail (at most 1/64 of this), the tissue mask and the
/// window table.
pub const MAX_ANALYSED_PIXELS: u64 = 1 << 32;

/// Largest side of the thumbnail an analysis keeps (for tissue detection and pictures), unless
/// tissue cells need more.
pub const THUMBNAIL_SIDE: usize = 2048;

/// How window probabilities are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Tiles of windows in one fully convolutional pass each ([`Scan::dense`]).
    Dense,
    /// Every window cropped and scored on its own ([`Scan::exact`]).
    Exact,
}

/// How an image is scanned: one value for the command line, the page and the studies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScanConfig {
    /// Distance between window positions, model-scale px ([`crate::slide::grid::STRIDES`]).
    pub stride: usize,
    pub mode: Mode,
    /// Largest tile side of the dense pass, model-scale px.
    pub tile: usize,
    /// Windows per batch of exact scoring.
    pub batch: usize,
    /// Test-time augmentation of the window scores.
    pub tta: Tta,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            stride: DEFAULT_STRIDE,
            mode: Mode::Dense,
            tile: DENSE_TILE,
            batch: EXACT_BATCH,
            tta: Tta::Off,
        }
    }
}

/// What is known of an image before any window is scored: its grid, a thumbnail and where
/// the tissue is.
#[derive(Clone, Debug)]
pub struct Survey {
    pub grid: WindowGrid,
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
        let grid = WindowGrid::new(width, height, stride)?;
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
    /// Model-scale pixels the network computes: the part of the crop its windows see with
    /// their context ([`ActiveArea`]).
    pub pixels: u64,
    /// Where the tile's windows start among the crop's windows (`crop_cols` across).
    context_col: usize,
    context_row: usize,
    crop_cols: usize,
    crop_rows: usize,
}

/// How far a scan has come: the windows scored, and the work done as model-scale pixels
/// computed, which is what its time follows (a tile's time goes with its pixels, not its
/// windows; one glimpse per window when scoring exactly). Estimates of the time left should
/// come from the pixels: tiles are scored largest first, and the large ones hold more windows
/// per pixel than the slivers at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub windows: usize,
    pub total_windows: usize,
    pub pixels: u64,
    pub total_pixels: u64,
}

impl DenseTile {
    /// Model-scale pixels the network computes for this tile.
    pub fn pixels(&self) -> u64 {
        self.pixels
    }
}

/// The scoring of a grid's tissue windows (those whose centre lies in tissue), and their
/// probabilities as they come in.
///
/// Dense: tiles of up to `tile` px overlap by `96 - stride` px so that every window lies whole
/// in one tile, and each carries [`DENSE_CONTEXT`] px of context around its windows; tiles
/// without a tissue window are left out, and the others shrink to the bounding box of their
/// tissue windows, cut in two where that computes fewer pixels ([`tissue_blocks`]). Each tile
/// is cropped ([`Scan::crop`]), scored in one
/// fully convolutional pass ([`Classifier::window_logits`]) anywhere, and accepted
/// ([`Scan::accept`]) in any order. Exact: windows are cropped and scored `batch` at a time.
#[derive(Clone, Debug)]
pub struct Scan {
    grid: WindowGrid,
    in_tissue: Vec<bool>,
    /// Context around each tile's windows, model-scale px (whole strides).
    context: usize,
    /// The dense pass's tiles; empty when scoring exactly.
    tiles: Vec<DenseTile>,
    /// Windows per batch when scoring exactly; 0 for the dense pass.
    batch: usize,
    probabilities: Vec<Option<f32>>,
}

impl Scan {
    /// The scan `config` asks for over `survey`'s grid and tissue.
    pub fn plan(survey: &Survey, config: &ScanConfig) -> Result<Scan> {
        match config.mode {
            Mode::Dense => Scan::dense(survey.grid, &survey.tissue, config.tile),
            Mode::Exact => Ok(Scan::exact(survey.grid, &survey.tissue, config.batch)),
        }
    }

    /// The dense pass over `grid`'s tissue windows in tiles of up to `tile` px a side (at least
    /// one window): smaller tiles report progress more often and need less memory, larger ones
    /// repeat less overlap.
    pub fn dense(grid: WindowGrid, tissue: &TissueMask, tile: usize) -> Result<Scan> {
        Scan::dense_with_context(grid, tissue, tile, DENSE_CONTEXT)
    }

    /// [`Scan::dense`] with `context` px (rounded up to whole strides) around each tile instead
    /// of [`DENSE_CONTEXT`]: how much context the tiles need is measured with it.
    pub fn dense_with_context(
        grid: WindowGrid,
        tissue: &TissueMask,
        tile: usize,
        context: usize,
    ) -> Result<Scan> {
        if !grid.stride.is_multiple_of(4) {
            return Err(CelnetError::InvalidParameter(format!(
                "dense scoring needs a stride divisible by 4 (the network halves the image \
                 twice), got {}; choose another stride or score exactly",
                grid.stride
            )));
        }
        let mut scan = Scan::exact(grid, tissue, 0);
        let per_tile = tile.saturating_sub(GLIMPSE) / grid.stride + 1;
        let context = context.div_ceil(grid.stride);
        scan.context = context * grid.stride;
        let mut tiles: Vec<DenseTile> = tissue_blocks(grid, &scan.in_tissue, per_tile, context)
            .into_iter()
            .map(|(b, windows)| {
                // Up to `context` more windows of the grid around the tile's: context for its
                // border windows, which see and attend to their neighbours as they would in
                // any other tile.
                let crop = b.with_context(grid, context);
                let (x, y) = grid.origin(crop.col, crop.row);
                DenseTile {
                    col: b.col,
                    row: b.row,
                    cols: b.cols,
                    rows: b.rows,
                    x,
                    y,
                    width: grid.span(crop.cols),
                    height: grid.span(crop.rows),
                    windows,
                    pixels: 0,
                    context_col: b.col - crop.col,
                    context_row: b.row - crop.row,
                    crop_cols: crop.cols,
                    crop_rows: crop.rows,
                }
            })
            .collect();
        for tile in &mut tiles {
            let grid = DenseWindows::of_glimpses(tile.height, tile.width, grid.stride)?;
            let area = ActiveArea::around(grid, &scan.kept_windows(tile), scan.context);
            tile.pixels = (area.fraction() * (tile.width * tile.height) as f64).round() as u64;
        }
        // Largest first: where tiles are scored side by side (in the page, by a pool of
        // workers), the last ones are small and no worker waits long for another (most tiles
        // are cut to their tissue); the estimates of time left follow pixels either way. Ties
        // stay in reading order.
        tiles.sort_by_key(|t| std::cmp::Reverse(t.pixels()));
        scan.tiles = tiles;
        Ok(scan)
    }

    /// Every tissue window of `grid` cropped and scored on its own, `batch` at a time.
    pub fn exact(grid: WindowGrid, tissue: &TissueMask, batch: usize) -> Scan {
        let in_tissue = (0..grid.rows)
            .flat_map(|r| (0..grid.cols).map(move |c| (c, r)))
            .map(|(c, r)| grid.in_tissue(tissue, c, r))
            .collect();
        Scan {
            grid,
            in_tissue,
            context: 0,
            tiles: Vec::new(),
            batch: batch.max(1),
            probabilities: vec![None; grid.cols * grid.rows],
        }
    }

    pub fn grid(&self) -> WindowGrid {
        self.grid
    }

    /// The dense pass's tiles, largest first (none when scoring exactly).
    pub fn tiles(&self) -> &[DenseTile] {
        &self.tiles
    }

    /// Model-scale pixels the network computes: what every dense tile's windows see with their
    /// context, or a glimpse per window when scoring exactly.
    pub fn pixels(&self) -> u64 {
        if self.tiles.is_empty() {
            return (self.total() * GLIMPSE * GLIMPSE) as u64;
        }
        self.tiles.iter().map(DenseTile::pixels).sum()
    }

    /// Tissue windows to score.
    pub fn total(&self) -> usize {
        self.in_tissue.iter().filter(|&&t| t).count()
    }

    /// The crop of `image` (model scale) that tile `index` scores.
    pub fn crop(&self, image: &(impl ModelScaleImage + ?Sized), index: usize) -> Result<RgbImage> {
        let t = self.tile(index)?;
        image.region(t.x, t.y, t.width, t.height)
    }

    /// The windows of tile `index`'s crop whose logits it keeps (its tissue windows, row-major
    /// over the crop's windows) and their context: the dense pass computes only what they see.
    pub fn kept(&self, index: usize) -> Result<KeptWindows> {
        Ok(KeptWindows {
            kept: self.kept_windows(self.tile(index)?),
            context: self.context,
        })
    }

    /// Tile `t`'s tissue windows, row-major over its crop's windows.
    fn kept_windows(&self, t: &DenseTile) -> Vec<bool> {
        let mut kept = vec![false; t.crop_cols * t.crop_rows];
        for r in 0..t.rows {
            for c in 0..t.cols {
                if self.in_tissue[self.grid.index(t.col + c, t.row + r)] {
                    kept[(r + t.context_row) * t.crop_cols + c + t.context_col] = true;
                }
            }
        }
        kept
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
    pub async fn score_tile(
        &mut self,
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        index: usize,
    ) -> Result<usize> {
        let crop = self.crop(image, index)?;
        let kept = self.kept(index)?;
        let logits = classifier
            .crop_window_logits(&crop, self.grid.stride, Some(&kept))
            .await?;
        self.accept(index, &logits)
    }

    /// Scores every tissue window of `image` (model scale): every tile of the dense pass, or
    /// every window on its own, calling `progress` after each tile or batch.
    pub async fn run(
        &mut self,
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        mut progress: impl FnMut(Progress),
    ) -> Result<()> {
        let mut done = Progress {
            total_windows: self.total(),
            total_pixels: self.pixels(),
            ..Progress::default()
        };
        if self.tiles.is_empty() {
            let kept: Vec<usize> = (0..self.in_tissue.len())
                .filter(|&i| self.in_tissue[i])
                .collect();
            for chunk in kept.chunks(self.batch) {
                let windows = chunk
                    .iter()
                    .map(|&i| {
                        let (x, y) = self.grid.origin(i % self.grid.cols, i / self.grid.cols);
                        image.region(x, y, GLIMPSE, GLIMPSE)
                    })
                    .collect::<Result<Vec<_>>>()?;
                for (&i, logit) in chunk.iter().zip(classifier.image_logits(&windows).await?) {
                    self.probabilities[i] = Some(sigmoid(logit));
                }
                done.windows += chunk.len();
                done.pixels += (chunk.len() * GLIMPSE * GLIMPSE) as u64;
                progress(done);
            }
            return Ok(());
        }
        #[cfg(not(target_arch = "wasm32"))]
        if matches!(
            classifier.device().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        ) {
            return self.run_tiles_pipelined(classifier, image, done, progress);
        }
        for index in 0..self.tiles.len() {
            done.windows += self.score_tile(classifier, image, index).await?;
            done.pixels += self.tiles[index].pixels();
            progress(done);
        }
        Ok(())
    }

    /// The dense pass on the CPU natively: one tile at a time on every core (the kernels and
    /// the attention passes split each map into bands), scored on a second thread while this
    /// one reads the next tile's crop, so that decoding the image overlaps the scoring.
    /// Scoring as many tiles side by side as there are cores was no faster and held twice
    /// the activations.
    #[cfg(not(target_arch = "wasm32"))]
    fn run_tiles_pipelined(
        &mut self,
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        mut done: Progress,
        mut progress: impl FnMut(Progress),
    ) -> Result<()> {
        use std::sync::mpsc::{channel, sync_channel};
        let stride = self.grid.stride;
        std::thread::scope(|scope| {
            // One crop waiting while one is scored and the next is read: three at most.
            let (crops, to_score) = sync_channel::<(usize, RgbImage, KeptWindows)>(1);
            let (scored, results) = channel::<(usize, Result<Vec<f32>>)>();
            scope.spawn(move || {
                for (index, crop, kept) in to_score {
                    let logits = pollster::block_on(classifier.crop_window_logits(
                        &crop,
                        stride,
                        Some(&kept),
                    ));
                    if scored.send((index, logits)).is_err() {
                        break;
                    }
                }
            });
            let mut accept = |this: &mut Self, (index, logits): (usize, Result<Vec<f32>>)| {
                done.windows += this.accept(index, &logits?)?;
                done.pixels += this.tiles[index].pixels();
                progress(done);
                Ok::<_, CelnetError>(())
            };
            for index in 0..self.tiles.len() {
                let crop = self.crop(image, index)?;
                if crops.send((index, crop, self.kept(index)?)).is_err() {
                    break; // the scoring thread ended; its result says why
                }
                while let Ok(result) = results.try_recv() {
                    accept(self, result)?;
                }
            }
            // No more crops: the scoring thread finishes the queue and ends.
            drop(crops);
            for result in results {
                accept(self, result)?;
            }
            Ok(())
        })
    }

    /// [`Scan::run`], then the heatmap.
    pub async fn score(
        mut self,
        classifier: &Classifier,
        image: &(impl ModelScaleImage + ?Sized),
        progress: impl FnMut(Progress),
    ) -> Result<Heatmap> {
        self.run(classifier, image, progress).await?;
        Ok(self.into_heatmap())
    }

    /// Window probabilities so far, row-major over the grid; `None` for windows not scored
    /// (background, or not scored yet).
    pub fn probabilities(&self) -> &[Option<f32>] {
        &self.probabilities
    }

    /// The heatmap so far: windows not yet scored are `None`.
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

    /// Tile `index` of the dense pass, or an error that says how many there are.
    pub fn tile(&self, index: usize) -> Result<&DenseTile> {
        self.tiles.get(index).ok_or_else(|| {
            CelnetError::InvalidParameter(format!(
                "no tile {index}: the scan has {}",
                self.tiles.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;

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
        let message = Survey::new(&Claimed(300_000, 300_000), DEFAULT_STRIDE)
            .unwrap_err()
            .to_string();
        assert!(message.contains("largest image analysed"), "{message}");
    }
}
