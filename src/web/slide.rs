//! The page's slide view, worker side: a large image or slide file opened from a local `File`,
//! viewed tile by tile, scored by the dense pass one tile at a time (so the worker can report
//! progress, be cancelled, and hand tiles to other workers), and exported exactly as
//! `celnet heatmap` writes it.
//!
//! Every method takes `&self` and borrows the state only while it runs synchronously, so viewer
//! tiles can be read between the tiles of a scoring run.

use std::cell::RefCell;
use std::io::BufReader;

use image::RgbImage;
use js_sys::{Float32Array, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::file_source::FileSource;
use super::{Explained, js_error, rgba, set, to_js};
use crate::error::CelnetError;
use crate::explain::CelmParams;
use crate::export::{
    ExplainedWindow, HeatmapReport, geojson, heatmap_picture, points_in_input, tiles_csv,
};
use crate::heatmap::{
    DENSE_TILE, DenseScan, Mode, ModelScaleImage, Point, Survey, TissueMask, WindowEvidence,
};
use crate::model::GLIMPSE;
use crate::scale::{FileResolution, PixelSize, to_model_scale};
use crate::slide::{Level, OpenedImage, ScaledSlide, Slide, pixel_span};

type Reader = BufReader<FileSource>;

/// Bytes read from the file at a time: TIFF directories are read in small pieces.
const READ_BUFFER: usize = 64 << 10;

/// One image or slide file opened in the worker.
#[wasm_bindgen]
pub struct SlideJob {
    name: String,
    width: u32,
    height: u32,
    resolution: FileResolution,
    levels: Vec<Level>,
    state: RefCell<State>,
}

struct State {
    pixels: Pixels,
    prepared: Option<Prepared>,
}

/// The image's pixels: a slide read on demand (seen at the model's scale once prepared), or a
/// decoded image with its copy at the model's scale.
enum Pixels {
    Slide(Box<Slide<Reader>>),
    Scaled(Box<ScaledSlide<Reader>>),
    Decoded {
        image: RgbImage,
        scaled: Option<RgbImage>,
    },
    /// Only while a slide moves from one of the states above to the other.
    Moving,
}

impl Pixels {
    fn model_scale(&self) -> Option<&dyn ModelScaleImage> {
        match self {
            Pixels::Scaled(slide) => Some(slide.as_ref()),
            Pixels::Decoded {
                scaled: Some(image),
                ..
            } => Some(image),
            Pixels::Decoded { image, .. } => Some(image),
            Pixels::Slide(_) | Pixels::Moving => None,
        }
    }
}

/// A scoring run's settings and results so far.
struct Prepared {
    size: PixelSize,
    level: Option<usize>,
    /// Input pixels per model-scale pixel.
    to_input: f64,
    tissue: TissueMask,
    scan: DenseScan,
    evidence: Vec<ExplainedWindow>,
}

/// A 96x96 window of the model-scale image, to be explained.
#[wasm_bindgen]
pub struct SlideWindow {
    pub(super) origin: (usize, usize),
    pub(super) image: RgbImage,
    to_input: f64,
}

#[wasm_bindgen]
impl SlideWindow {
    /// `{x, y, size}`: the window in the input's full-resolution pixels.
    pub fn bounds(&self) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        struct Bounds {
            x: f64,
            y: f64,
            size: f64,
        }
        to_js(&Bounds {
            x: self.origin.0 as f64 * self.to_input,
            y: self.origin.1 as f64 * self.to_input,
            size: GLIMPSE as f64 * self.to_input,
        })
    }
}

#[wasm_bindgen]
impl SlideJob {
    /// Opens a dropped file: TIFF and SVS are read tile by tile through slices of the file,
    /// other images are read whole and decoded. Call in a worker.
    pub fn open(file: web_sys::File) -> Result<SlideJob, JsError> {
        let name = file.name();
        let source = FileSource::new(file.into())
            .map_err(|e| JsError::new(&format!("cannot read {name}: {e}")))?;
        let opened = OpenedImage::open(BufReader::with_capacity(READ_BUFFER, source))
            .map_err(|e| JsError::new(&format!("{name}: {e}")))?;
        let (width, height) = opened.dimensions();
        let resolution = opened.resolution();
        let (levels, pixels) = match opened {
            OpenedImage::Slide(slide) => (slide.levels().to_vec(), Pixels::Slide(slide)),
            OpenedImage::Decoded(image, _) => (
                vec![Level {
                    width,
                    height,
                    downsample: 1.0,
                    ..Level::default()
                }],
                Pixels::Decoded {
                    image,
                    scaled: None,
                },
            ),
        };
        Ok(SlideJob {
            name,
            width,
            height,
            resolution,
            levels,
            state: RefCell::new(State {
                pixels,
                prepared: None,
            }),
        })
    }

    /// `{name, width, height, mpp, declared_mpp, slide, levels: [{width, height,
    /// downsample}]}`: `mpp` is the file's plausible pixel size (or null), `declared_mpp` an
    /// implausible one it declares (a screen's dpi), `slide` whether it is read tile by tile.
    pub fn info(&self) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        struct LevelInfo {
            width: u32,
            height: u32,
            downsample: f64,
        }
        #[derive(Serialize)]
        struct Info<'a> {
            name: &'a str,
            width: u32,
            height: u32,
            mpp: Option<f64>,
            declared_mpp: Option<f64>,
            slide: bool,
            levels: Vec<LevelInfo>,
        }
        let state = self.state.borrow();
        to_js(&Info {
            name: &self.name,
            width: self.width,
            height: self.height,
            mpp: match self.resolution {
                FileResolution::Found(mpp) => Some(mpp),
                _ => None,
            },
            declared_mpp: match self.resolution {
                FileResolution::Implausible(mpp) => Some(mpp),
                _ => None,
            },
            slide: !matches!(state.pixels, Pixels::Decoded { .. }),
            levels: self
                .levels
                .iter()
                .map(|l| LevelInfo {
                    width: l.width,
                    height: l.height,
                    downsample: l.downsample,
                })
                .collect(),
        })
    }

    /// RGBA pixels of the `(x0, y0)`-`(x1, y1)` rectangle of the full-resolution image,
    /// resized to `width` x `height` (a viewer tile).
    pub fn view(
        &self,
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        width: u32,
        height: u32,
    ) -> Result<Uint8Array, JsError> {
        if width == 0 || height == 0 || width > 4096 || height > 4096 || x1 <= x0 || y1 <= y0 {
            return Err(JsError::new("a view must be 1 to 4096 px a side"));
        }
        let rect = (x0, y0, x1, y1);
        let mut state = self.state.borrow_mut();
        let rgb = match &mut state.pixels {
            Pixels::Slide(slide) => slide.view(rect, width, height),
            Pixels::Scaled(scaled) => scaled.with_slide(|s| s.view(rect, width, height)),
            Pixels::Decoded { image, .. } => Ok(view_of(image, rect, width, height)),
            Pixels::Moving => Err(CelnetError::InvalidParameter("the image is closed".into())),
        }
        .map_err(js_error)?;
        Ok(Uint8Array::from(&rgba(&rgb)[..]))
    }

    /// Resolves the pixel size (`mpp` typed by the user, or null for the file's), sees the
    /// image at the model's scale, finds its tissue and plans the dense pass at `stride`.
    /// Returns `{mpp, mpp_source, level, factor, stride, grid: [cols, rows], windows, tiles,
    /// tissue: {cols, rows, cell, fraction}}`. An image without a pixel size is an error that
    /// says how to give one.
    pub fn prepare(&self, mpp: Option<f64>, stride: usize) -> Result<JsValue, JsError> {
        let size =
            PixelSize::resolve(mpp, self.resolution, self.width, self.height).map_err(js_error)?;
        let mut state = self.state.borrow_mut();
        state.prepared = None;
        let (level, to_input) = match std::mem::replace(&mut state.pixels, Pixels::Moving) {
            Pixels::Slide(slide) => scale_slide(&mut state, *slide, &size)?,
            Pixels::Scaled(scaled) => scale_slide(&mut state, scaled.into_slide(), &size)?,
            Pixels::Decoded { image, .. } => {
                let scaled = match to_model_scale(&image, &size) {
                    std::borrow::Cow::Owned(scaled) => Some(scaled),
                    std::borrow::Cow::Borrowed(_) => None,
                };
                state.pixels = Pixels::Decoded { image, scaled };
                (None, size.factor().recip())
            }
            Pixels::Moving => return Err(JsError::new("the image is closed")),
        };
        let image = state.pixels.model_scale().expect("prepared pixels");
        let survey = Survey::new(image, stride).map_err(js_error)?;
        let scan = DenseScan::new(survey.grid, &survey.tissue, DENSE_TILE).map_err(js_error)?;
        #[derive(Serialize)]
        struct Tissue {
            cols: usize,
            rows: usize,
            /// Input pixels per cell.
            cell: f64,
            fraction: f64,
        }
        #[derive(Serialize)]
        struct Plan {
            mpp: f64,
            mpp_source: crate::scale::MppSource,
            level: Option<usize>,
            factor: f64,
            stride: usize,
            grid: [usize; 2],
            windows: usize,
            tiles: usize,
            tissue: Tissue,
        }
        let grid = scan.grid();
        let plan = Plan {
            mpp: size.mpp,
            mpp_source: size.source,
            level,
            factor: to_input.recip(),
            stride,
            grid: [grid.cols, grid.rows],
            windows: scan.total(),
            tiles: scan.tiles().len(),
            tissue: Tissue {
                cols: survey.tissue.cols,
                rows: survey.tissue.rows,
                cell: f64::from(crate::heatmap::TISSUE_CELL) * to_input,
                fraction: survey.tissue.fraction(),
            },
        };
        state.prepared = Some(Prepared {
            size,
            level,
            to_input,
            tissue: survey.tissue,
            scan,
            evidence: Vec::new(),
        });
        to_js(&plan)
    }

    /// The tissue mask of the prepared run: one byte per cell, 1 where tissue is.
    pub fn tissue(&self) -> Result<Uint8Array, JsError> {
        let state = self.state.borrow();
        let prepared = prepared(&state)?;
        let cells: Vec<u8> = prepared.tissue.data.iter().map(|&t| u8::from(t)).collect();
        Ok(Uint8Array::from(&cells[..]))
    }

    /// `{x, y, width, height, windows}` of tile `index` (model-scale px) of the prepared run.
    pub fn tile(&self, index: usize) -> Result<JsValue, JsError> {
        let state = self.state.borrow();
        let scan = &prepared(&state)?.scan;
        let tile = scan
            .tiles()
            .get(index)
            .ok_or_else(|| JsError::new(&format!("no tile {index}")))?;
        to_js(tile)
    }

    /// The model-scale RGB pixels tile `index` scores (to be scored by any worker's
    /// `Session::window_logits` at the run's stride).
    pub fn crop(&self, index: usize) -> Result<Uint8Array, JsError> {
        let state = self.state.borrow();
        let prepared = prepared(&state)?;
        let image = state.pixels.model_scale().expect("prepared pixels");
        let crop = prepared.scan.crop(image, index).map_err(js_error)?;
        Ok(Uint8Array::from(crop.as_raw().as_slice()))
    }

    /// Keeps the window logits of tile `index`; returns how many windows it scored.
    pub fn accept(&self, index: usize, logits: Vec<f32>) -> Result<usize, JsError> {
        let mut state = self.state.borrow_mut();
        let prepared = prepared_mut(&mut state)?;
        prepared.scan.accept(index, &logits).map_err(js_error)
    }

    /// Window probabilities so far, row-major over the grid; NaN where nothing was scored.
    pub fn probabilities(&self) -> Result<Float32Array, JsError> {
        let state = self.state.borrow();
        let values: Vec<f32> = prepared(&state)?
            .scan
            .probabilities()
            .iter()
            .map(|p| p.unwrap_or(f32::NAN))
            .collect();
        Ok(Float32Array::from(&values[..]))
    }

    /// Tumour points by non-maximum suppression, `[{x, y, probability}]` in the input's pixels,
    /// most probable first.
    pub fn points(&self) -> Result<JsValue, JsError> {
        let state = self.state.borrow();
        let prepared = prepared(&state)?;
        to_js(&points_in_input(
            &prepared.scan.heatmap().tumour_points(),
            prepared.to_input,
        ))
    }

    /// The 96x96 window (model scale) centred as near `(x, y)` of the input as the image allows.
    pub fn window(&self, x: f64, y: f64) -> Result<SlideWindow, JsError> {
        if !(x >= 0.0 && y >= 0.0 && x < f64::from(self.width) && y < f64::from(self.height)) {
            return Err(JsError::new(&format!(
                "({x:.0}, {y:.0}) lies outside the {}x{} px image",
                self.width, self.height
            )));
        }
        let state = self.state.borrow();
        let to_input = prepared(&state)?.to_input;
        let image = state.pixels.model_scale().expect("prepared pixels");
        let point = Point {
            x: x / to_input,
            y: y / to_input,
            probability: f32::NAN,
        };
        let (origin, image) = WindowEvidence::crop(image, &point).map_err(js_error)?;
        Ok(SlideWindow {
            origin,
            image,
            to_input,
        })
    }

    /// Adds an explained window (from [`super::Session::explain_window`]) to the exports, with
    /// its regions at the default CELM parameters; `reason` is `top` or `requested`.
    pub fn add_evidence(&self, explained: &Explained, reason: String) -> Result<(), JsError> {
        let reason = match reason.as_str() {
            "top" => "top",
            "requested" => "requested",
            other => return Err(JsError::new(&format!("unknown reason {other:?}"))),
        };
        let origin = explained
            .origin
            .ok_or_else(|| JsError::new("this explanation is not of a window of the image"))?;
        let explanation = explained
            .evidence
            .fuse(&CelmParams::default())
            .map_err(js_error)?;
        let window = WindowEvidence {
            origin,
            image: RgbImage::new(0, 0),
            explanation,
        };
        let mut state = self.state.borrow_mut();
        let prepared = prepared_mut(&mut state)?;
        prepared
            .evidence
            .push(ExplainedWindow::new(&window, reason, prepared.to_input));
        Ok(())
    }

    /// Everything `celnet heatmap` writes, for the prepared run as scored so far:
    /// `{summary, geojson, csv, heatmap_png}`; `summary` has the fields of its `summary.json`
    /// plus `backend` and `weights`.
    pub fn report(&self, backend: String, weights: String) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        struct Summary {
            #[serde(flatten)]
            report: HeatmapReport,
            backend: String,
            weights: String,
        }
        let state = self.state.borrow();
        let prepared = prepared(&state)?;
        let heatmap = prepared.scan.heatmap();
        let to_input = prepared.to_input;
        let points = points_in_input(&heatmap.tumour_points(), to_input);
        let grid = heatmap.grid;
        let report = HeatmapReport {
            file: self.name.clone(),
            width: self.width,
            height: self.height,
            mpp: prepared.size.mpp,
            mpp_source: prepared.size.source,
            level: prepared.level,
            factor: to_input.recip(),
            stride: grid.stride,
            grid: [grid.cols, grid.rows],
            windows: heatmap.scored(),
            tissue_fraction: prepared.tissue.fraction(),
            slide_score: heatmap.slide_score(),
            slide_scores: heatmap.slide_scores(),
            points: points.clone(),
            evidence: prepared.evidence.clone(),
            mode: Mode::Dense,
            // The page's scorers know it; their windows' logits arrive already averaged.
            tta: None,
            files: Vec::new(),
        };
        let geojson = geojson(&heatmap, &points, &prepared.evidence, to_input).to_string();
        let result = to_js(&Summary {
            report,
            backend,
            weights,
        })?;
        let out = js_sys::Object::new();
        set(&out, "summary", &result)?;
        set(&out, "geojson", &JsValue::from_str(&geojson))?;
        set(
            &out,
            "csv",
            &JsValue::from_str(&tiles_csv(&heatmap, to_input)),
        )?;
        let mut png = Vec::new();
        heatmap_picture(&heatmap)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| JsError::new(&format!("cannot encode the heatmap: {e}")))?;
        set(&out, "heatmap_png", &Uint8Array::from(&png[..]))?;
        Ok(out.into())
    }
}

/// Sees `slide` at the model's scale, from the level its pixel size calls for; returns the
/// level read and input px per model px.
fn scale_slide(
    state: &mut State,
    slide: Slide<Reader>,
    size: &PixelSize,
) -> Result<(Option<usize>, f64), JsError> {
    let scaled = ScaledSlide::new(slide, size.mpp, None).map_err(js_error)?;
    let answer = (Some(scaled.level()), scaled.to_level0());
    state.pixels = Pixels::Scaled(Box::new(scaled));
    Ok(answer)
}

fn prepared(state: &State) -> Result<&Prepared, JsError> {
    state
        .prepared
        .as_ref()
        .ok_or_else(|| JsError::new("the image has not been prepared for scoring"))
}

fn prepared_mut(state: &mut State) -> Result<&mut Prepared, JsError> {
    state
        .prepared
        .as_mut()
        .ok_or_else(|| JsError::new("the image has not been prepared for scoring"))
}

/// A rectangle of a decoded image resized to `width` x `height`.
fn view_of(image: &RgbImage, rect: (f64, f64, f64, f64), w: u32, h: u32) -> RgbImage {
    let (x, y, width, height) = pixel_span(rect, image.width(), image.height());
    let crop = image::imageops::crop_imm(image, x, y, width, height).to_image();
    if crop.dimensions() == (w, h) {
        return crop;
    }
    // Nearest neighbour when shrinking a lot: a viewer tile need not average millions of
    // pixels.
    let filter = if crop.width() > 4 * w {
        image::imageops::FilterType::Nearest
    } else {
        image::imageops::FilterType::Triangle
    };
    image::imageops::resize(&crop, w, h, filter)
}
