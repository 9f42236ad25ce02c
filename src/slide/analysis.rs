//! One input analysed from the opened file to the report: the pipeline that `celnet heatmap`
//! and the page's slide view both run, so that they cannot drift apart.
//!
//! [`Analysis::new`] decides the pixel size, sees the input at the model's scale, finds the
//! tissue and plans the scan; the windows are then scored in one call ([`Analysis::run`]) or
//! tile by tile in any order ([`Analysis::crop`], [`Analysis::accept`]); chosen windows are
//! explained; and the report and exports come from one place ([`Analysis::report`]).

use std::io::{Read, Seek};
use std::rc::Rc;

use image::{GrayImage, RgbImage};
use serde::Serialize;
use serde_json::Value;

use crate::error::{CelnetError, Result};
use crate::explain::{CelmParams, Explainer};
use crate::network::active_area::KeptWindows;
use crate::network::classifier::{Classifier, Tta};
use crate::network::model::GLIMPSE;
use crate::slide::evidence::{EvidenceReason, ExplainedWindow, WindowEvidence};
use crate::slide::export::{
    HeatmapReport, Scoring, geojson, heatmap_picture, overlay_picture, points_in_input, tiles_csv,
    tissue_picture,
};
use crate::slide::file::OpenedImage;
use crate::slide::grid::WindowGrid;
use crate::slide::heatmap::{Heatmap, Point};
use crate::slide::image::{ModelScaleImage, ScaledInput};
use crate::slide::lesions::Lesion;
use crate::slide::probability::{SlideAnswer, SlideModel};
use crate::slide::scale::{ModelScale, MppSource, PixelSize};
use crate::slide::scan::{Mode, Progress, Scan, ScanConfig, Survey};
use crate::slide::tissue::{TISSUE_CELL, TissueMask};

/// Windows explained for a report by default: those of the most probable tumour points.
pub const DEFAULT_TOP_K: usize = 3;

/// An input being analysed: seen at the model's scale, surveyed, scored as far as it has
/// been, with the windows explained so far.
#[derive(Debug)]
pub struct Analysis<R: Read + Seek> {
    image: ScaledInput<R>,
    size: PixelSize,
    config: ScanConfig,
    thumbnail: RgbImage,
    tissue: TissueMask,
    scan: Scan,
    evidence: Vec<ExplainedWindow>,
    /// The slide model, when not the shipped one.
    slide_model: Option<SlideModel>,
}

impl<R: Read + Seek> Analysis<R> {
    /// Decides the pixel size of `input` (the user's `mpp`, else the file's, else a glimpse's;
    /// otherwise an error that says how to give one), sees it at the model's scale from `level`
    /// (by default the coarsest level at least as fine as the model's scale), finds its tissue
    /// and plans the scan `config` asks for.
    pub fn new(
        input: Rc<OpenedImage<R>>,
        mpp: Option<f64>,
        level: Option<usize>,
        config: ScanConfig,
    ) -> Result<Analysis<R>> {
        let (width, height) = input.dimensions();
        let size = PixelSize::resolve(mpp, input.resolution(), width, height)?;
        let image = ScaledInput::new(input, &size, level)?;
        let survey = Survey::new(&image, config.stride)?;
        let scan = Scan::plan(&survey, &config)?;
        Ok(Analysis {
            image,
            size,
            config,
            thumbnail: survey.thumbnail,
            tissue: survey.tissue,
            scan,
            evidence: Vec::new(),
            slide_model: None,
        })
    }

    /// The input at the model's scale.
    pub fn image(&self) -> &ScaledInput<R> {
        &self.image
    }

    /// The input's pixel size and where it came from.
    pub fn pixel_size(&self) -> PixelSize {
        self.size
    }

    /// How the model's pixels map onto the input's.
    pub fn scale(&self) -> ModelScale {
        self.image.scale()
    }

    /// The pyramid level read, for inputs read tile by tile.
    pub fn level(&self) -> Option<usize> {
        self.image
            .input()
            .is_tiled()
            .then_some(self.image.scale().level)
    }

    pub fn config(&self) -> &ScanConfig {
        &self.config
    }

    pub fn grid(&self) -> WindowGrid {
        self.scan.grid()
    }

    pub fn tissue(&self) -> &TissueMask {
        &self.tissue
    }

    /// The scan: its tiles, the windows to score and the probabilities so far.
    pub fn scan(&self) -> &Scan {
        &self.scan
    }

    /// The model-scale crop tile `index` of the dense pass scores (to be scored anywhere by
    /// [`Classifier::crop_window_logits`] at the grid's stride).
    pub fn crop(&self, index: usize) -> Result<RgbImage> {
        self.scan.crop(&self.image, index)
    }

    /// The windows whose logits tile `index` keeps, for scoring its crop ([`Scan::kept`]).
    pub fn kept(&self, index: usize) -> Result<KeptWindows> {
        self.scan.kept(index)
    }

    /// Keeps the window logits of tile `index`; returns how many windows it scored.
    pub fn accept(&mut self, index: usize, logits: &[f32]) -> Result<usize> {
        self.scan.accept(index, logits)
    }

    /// `classifier` scoring as this analysis asks (test-time augmentation or not).
    pub fn scorer(&self, classifier: &Classifier) -> Classifier {
        classifier.clone().with_tta(self.config.tta)
    }

    /// Crops, scores and keeps tile `index` of the dense pass; returns its window count.
    pub async fn score_tile(&mut self, classifier: &Classifier, index: usize) -> Result<usize> {
        let classifier = self.scorer(classifier);
        self.scan.score_tile(&classifier, &self.image, index).await
    }

    /// Scores every tissue window, calling `progress` after each tile or batch.
    pub async fn run(
        &mut self,
        classifier: &Classifier,
        progress: impl FnMut(Progress),
    ) -> Result<()> {
        let classifier = self.scorer(classifier);
        self.scan.run(&classifier, &self.image, progress).await
    }

    /// The heatmap as scored so far.
    pub fn heatmap(&self) -> Heatmap {
        self.scan.heatmap()
    }

    /// Tumour points by non-maximum suppression, most probable first, model-scale pixels.
    pub fn tumour_points(&self) -> Vec<Point> {
        self.scan.heatmap().tumour_points()
    }

    /// [`Analysis::tumour_points`] in the input's pixels.
    pub fn points(&self) -> Vec<Point> {
        points_in_input(&self.tumour_points(), &self.scale())
    }

    /// The windows of the `k` most probable tumour points, to be explained.
    pub fn top_windows(&self, k: usize) -> Vec<(Point, EvidenceReason)> {
        let points = self.tumour_points();
        let top = points.into_iter().take(k);
        top.map(|p| (p, EvidenceReason::Top)).collect()
    }

    /// The window centred as near `(x, y)` (the input's pixels) as the image allows, to be
    /// explained on request; a position outside the input is an error.
    pub fn requested_window(&self, x: f64, y: f64) -> Result<(Point, EvidenceReason)> {
        let (width, height) = self.image.input().dimensions();
        if !(x >= 0.0 && y >= 0.0 && x < f64::from(width) && y < f64::from(height)) {
            return Err(CelnetError::InvalidParameter(format!(
                "({x:.0}, {y:.0}) lies outside the {width}x{height} px input"
            )));
        }
        let scale = self.scale();
        let point = Point {
            x: scale.to_model(x),
            y: scale.to_model(y),
            probability: f32::NAN,
        };
        Ok((point, EvidenceReason::Requested))
    }

    /// The top-left corner (model scale) and pixels of the window centred as near `point`
    /// (model scale) as the image allows.
    pub fn window(&self, point: &Point) -> Result<((usize, usize), RgbImage)> {
        WindowEvidence::crop(&self.image, point)
    }

    /// The bounds of the window whose top-left corner is `origin` (model scale), in the input's
    /// pixels.
    pub fn window_bounds(&self, origin: (usize, usize)) -> WindowBounds {
        let scale = self.scale();
        WindowBounds {
            x: scale.to_input(origin.0 as f64),
            y: scale.to_input(origin.1 as f64),
            size: scale.to_input(GLIMPSE as f64),
        }
    }

    /// Keeps an explained window for the report and exports; returns its entry (to which the
    /// caller may add the file its overlay went to).
    pub fn record(
        &mut self,
        window: &WindowEvidence,
        reason: EvidenceReason,
    ) -> &mut ExplainedWindow {
        let scale = self.scale();
        self.evidence
            .push(ExplainedWindow::new(window, reason, &scale));
        self.evidence.last_mut().expect("just pushed")
    }

    /// Explains (CELM, default parameters) and keeps the windows `wanted`; returns them.
    pub async fn explain(
        &mut self,
        explainer: &Explainer,
        wanted: &[(Point, EvidenceReason)],
    ) -> Result<Vec<WindowEvidence>> {
        let params = CelmParams::default();
        let mut explained = Vec::with_capacity(wanted.len());
        for (point, reason) in wanted {
            let (origin, window) = self.window(point)?;
            let evidence = WindowEvidence::explain(explainer, origin, window, &params).await?;
            self.record(&evidence, *reason);
            explained.push(evidence);
        }
        Ok(explained)
    }

    /// The explained windows kept so far.
    pub fn evidence(&self) -> &[ExplainedWindow] {
        &self.evidence
    }

    /// Uses `model` for lesions and the slide probability instead of the shipped slide model
    /// (which belongs to the shipped weights).
    pub fn set_slide_model(&mut self, model: SlideModel) {
        self.slide_model = Some(model);
    }

    /// Lesions, the slide probability and the slide's category, by the slide model.
    pub fn slide_answer(&self) -> SlideAnswer {
        let model = self
            .slide_model
            .as_ref()
            .unwrap_or_else(|| SlideModel::shipped());
        SlideAnswer::of(&self.heatmap(), &self.scale(), self.size.mpp, model)
    }

    /// What the analysis found, for `file`; `files` left empty for the caller that writes some.
    pub fn report(&self, file: String) -> HeatmapReport {
        let heatmap = self.heatmap();
        let grid = heatmap.grid;
        let answer = self.slide_answer();
        HeatmapReport {
            file,
            width: self.image.input().dimensions().0,
            height: self.image.input().dimensions().1,
            format: self.image.input().format().to_string(),
            mpp: self.size.mpp,
            mpp_source: self.size.source,
            level: self.level(),
            factor: self.scale().factor(),
            stride: grid.stride,
            grid: [grid.cols, grid.rows],
            windows: heatmap.scored(),
            tissue_fraction: self.tissue.fraction(),
            slide_score: heatmap.slide_score(),
            slide_scores: heatmap.slide_scores(),
            slide_probability: answer.probability,
            slide_category: answer.category,
            lesions: answer.lesions,
            points: self.points(),
            evidence: self.evidence.clone(),
            mode: self.config.mode,
            tta: self.config.tta,
            scoring: Scoring {
                tiles: self.scan.tiles().len(),
                tile: (self.config.mode == Mode::Dense).then_some(self.config.tile),
                pixels: self.scan.pixels(),
                ..Scoring::default()
            },
            files: Vec::new(),
        }
    }

    /// The scan as planned, in the input's pixels: what a viewer needs to draw it.
    pub fn plan(&self) -> Plan {
        let grid = self.grid();
        let scale = self.scale();
        let half = (GLIMPSE / 2) as f64;
        let (width, height) = self.image.input().dimensions();
        Plan {
            mpp: self.size.mpp,
            mpp_source: self.size.source,
            level: self.level(),
            factor: scale.factor(),
            input_per_model: scale.input_per_model(),
            width,
            height,
            stride: grid.stride,
            grid: [grid.cols, grid.rows],
            windows: self.scan.total(),
            tiles: self.scan.tiles().len(),
            pixels: self.scan.pixels(),
            window_side: scale.to_input(GLIMPSE as f64),
            // Each window's probability covers the stride square around its centre, so that
            // a pixel shows the window whose centre is nearest (as the CLI's overlay does).
            cells: CellLayout {
                x: scale.to_input(half - grid.stride as f64 / 2.0),
                y: scale.to_input(half - grid.stride as f64 / 2.0),
                side: scale.to_input(grid.stride as f64),
            },
            tissue: TissuePlan {
                cols: self.tissue.cols,
                rows: self.tissue.rows,
                cell: scale.to_input(f64::from(TISSUE_CELL)),
                fraction: self.tissue.fraction(),
            },
            tta: self.config.tta,
        }
    }

    /// The QuPath GeoJSON of the windows, `lesions` (the report's, so that they are found once),
    /// tumour points and explained windows' regions.
    pub fn geojson(&self, lesions: &[Lesion]) -> Value {
        geojson(
            &self.heatmap(),
            lesions,
            &self.points(),
            &self.evidence,
            &self.scale(),
        )
    }

    /// The window table (CSV).
    pub fn tiles_csv(&self) -> String {
        tiles_csv(&self.heatmap(), &self.scale())
    }

    /// One pixel per window in the colour map.
    pub fn heatmap_picture(&self) -> RgbImage {
        heatmap_picture(&self.heatmap())
    }

    /// The heatmap over the input's thumbnail.
    pub fn overlay_picture(&self) -> RgbImage {
        let (model_width, _) = self.image.dimensions();
        overlay_picture(&self.thumbnail, model_width, &self.heatmap())
    }

    /// The tissue mask, white where tissue is.
    pub fn tissue_picture(&self) -> GrayImage {
        tissue_picture(&self.tissue)
    }
}

/// A window's square in the input's pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WindowBounds {
    pub x: f64,
    pub y: f64,
    pub size: f64,
}

/// Where a heatmap's cells lie over the input: cell `(col, row)` (the probability of window
/// `(col, row)`) is the square of side `side` at `(x + col * side, y + row * side)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CellLayout {
    pub x: f64,
    pub y: f64,
    pub side: f64,
}

/// The tissue mask's layout over the input.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TissuePlan {
    pub cols: usize,
    pub rows: usize,
    /// Input pixels per cell.
    pub cell: f64,
    pub fraction: f64,
}

/// An analysis as planned: the pixel size and where it came from, the level read, the scale,
/// the grid and its tiles, and where the heatmap's cells and the tissue mask lie over the input
/// (input pixels).
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub mpp: f64,
    pub mpp_source: MppSource,
    pub level: Option<usize>,
    /// Model-scale pixels per input pixel.
    pub factor: f64,
    /// Input pixels per model-scale pixel.
    pub input_per_model: f64,
    /// The input's full-resolution size.
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub grid: [usize; 2],
    /// Tissue windows to score.
    pub windows: usize,
    /// Tiles of the dense pass.
    pub tiles: usize,
    /// Model-scale pixels the network computes: the work, which estimates of the time left
    /// follow (see [`Progress`]).
    pub pixels: u64,
    /// A window's side in the input's pixels.
    pub window_side: f64,
    pub cells: CellLayout,
    pub tissue: TissuePlan,
    pub tta: Tta,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::FileResolution;

    type Memory = std::io::Cursor<Vec<u8>>;

    /// The 288x192 px fixture region (tissue and glass), opened as the page opens a PNG.
    fn region() -> Rc<OpenedImage<Memory>> {
        let bytes = std::fs::read("tests/fixtures/tiff/region.png").unwrap();
        Rc::new(OpenedImage::open(std::io::Cursor::new(bytes)).unwrap())
    }

    fn classifier() -> Classifier {
        let device = burn::prelude::Device::flex();
        Classifier::new(crate::weights::load_default(&device).unwrap(), &device)
    }

    /// A tile a window: the region's windows in several tiles.
    fn small_tiles() -> ScanConfig {
        ScanConfig {
            tile: GLIMPSE,
            ..ScanConfig::default()
        }
    }

    #[test]
    fn tiles_accepted_in_any_order_give_the_run_and_one_report() {
        let classifier = classifier();
        // 0.8 µm/px: shrunk to the model's scale, so input and model pixels differ.
        let mut whole = Analysis::new(region(), Some(0.8), None, small_tiles()).unwrap();
        pollster::block_on(whole.run(&classifier, |_| {})).unwrap();
        let mut pieces = Analysis::new(region(), Some(0.8), None, small_tiles()).unwrap();
        let tiles = pieces.scan().tiles().len();
        assert!(tiles >= 2, "{tiles} tiles");
        for index in (0..tiles).rev() {
            let crop = pieces.crop(index).unwrap();
            let stride = pieces.grid().stride;
            let kept = pieces.kept(index).unwrap();
            let logits =
                pollster::block_on(classifier.crop_window_logits(&crop, stride, Some(&kept)))
                    .unwrap();
            pieces.accept(index, &logits).unwrap();
        }
        assert_eq!(pieces.scan().probabilities(), whole.scan().probabilities());

        let report = whole.report("region.png".into());
        let scale = whole.scale();
        assert_eq!(report.level, None, "a decoded image has no pyramid level");
        assert_eq!(report.mpp_source, MppSource::User);
        assert_eq!(report.factor, scale.factor());
        assert!((scale.input_per_model() - crate::slide::scale::MODEL_MPP / 0.8).abs() < 1e-12);
        assert_eq!(report.windows, whole.scan().total());
        assert_eq!(report.tta, Tta::Off);
        for (p, q) in report.points.iter().zip(whole.tumour_points()) {
            assert_eq!((p.x, p.y), (scale.to_input(q.x), scale.to_input(q.y)));
        }
        let plan = whole.plan();
        assert_eq!(plan.windows, report.windows);
        assert_eq!(plan.window_side, scale.to_input(GLIMPSE as f64));
        assert_eq!(plan.cells.side, scale.to_input(plan.stride as f64));
    }

    #[test]
    fn windows_are_asked_for_in_input_pixels_and_explained_once_each() {
        let mut analysis = Analysis::new(region(), Some(0.5), None, small_tiles()).unwrap();
        let message = analysis
            .requested_window(288.0, 10.0)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("lies outside the 288x192 px input"),
            "{message}"
        );
        let (point, reason) = analysis.requested_window(144.0, 96.0).unwrap();
        assert_eq!(reason, EvidenceReason::Requested);
        assert!((analysis.scale().to_input(point.x) - 144.0).abs() < 1e-9);
        let device = burn::prelude::Device::flex();
        let explainer = Explainer::new(crate::weights::load_default(&device).unwrap(), &device);
        let explained =
            pollster::block_on(analysis.explain(&explainer, &[(point, reason)])).unwrap();
        assert_eq!(explained.len(), 1);
        let kept = &analysis.evidence()[0];
        let bounds = analysis.window_bounds(explained[0].origin);
        assert_eq!(
            (kept.x, kept.y, kept.width),
            (bounds.x, bounds.y, bounds.size)
        );
        assert_eq!(analysis.report("r".into()).evidence.len(), 1);
    }

    #[test]
    fn what_cannot_be_scanned_is_an_error_before_any_work() {
        // No pixel size: the message says how to give one.
        let message = Analysis::new(region(), None, None, ScanConfig::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("--mpp"), "{message}");
        // A stride the dense pass cannot align; exact scoring takes it.
        let odd = ScanConfig {
            stride: 30,
            ..ScanConfig::default()
        };
        assert!(Analysis::new(region(), Some(0.972), None, odd).is_err());
        let exact = ScanConfig {
            mode: Mode::Exact,
            ..odd
        };
        assert!(Analysis::new(region(), Some(0.972), None, exact).is_ok());
        // A pyramid level of an image that has one resolution.
        let message = Analysis::new(region(), Some(0.972), Some(1), ScanConfig::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("one resolution"), "{message}");
        let decoded =
            OpenedImage::<Memory>::decoded(image::RgbImage::new(64, 64), FileResolution::Unknown);
        assert!(decoded.is_glimpse());
    }
}
