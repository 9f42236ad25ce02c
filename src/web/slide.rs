//! The page's slide view, worker side: a thin adapter over [`Analysis`] for a large image or
//! slide file opened from a local `File` (read through slices, never whole). The worker views
//! it tile by tile, scores it one tile at a time (so it can report progress, be cancelled, and
//! hand tiles to other workers) and exports exactly what `celnet heatmap` writes.
//!
//! Viewer tiles read the opened file only, so they can be served between the tiles of a
//! scoring run. An asynchronous step takes the analysis out while it runs: another call meanwhile
//! gets an error, never a crash.

use std::cell::RefCell;
use std::io::BufReader;
use std::rc::Rc;

use image::RgbImage;
use js_sys::{Float32Array, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::file_source::FileSource;
use super::{Session, js_error, rgba, set, to_js};
use crate::error::CelnetError;
use crate::slide::scan::PAGE_TILE;
use crate::slide::{Analysis, Level, OpenedImage, ScanConfig, WindowBounds};

type Reader = BufReader<FileSource>;

/// Bytes read from the file at a time: TIFF directories are read in small pieces.
const READ_BUFFER: usize = 64 << 10;

/// One image or slide file opened in the worker.
#[wasm_bindgen]
pub struct SlideJob {
    name: String,
    input: Rc<OpenedImage<Reader>>,
    /// The analysis of the latest [`SlideJob::prepare`]; `Busy` while a step runs.
    analysis: RefCell<State>,
}

enum State {
    Unprepared,
    Ready(Box<Analysis<Reader>>),
    Busy,
}

/// A 96x96 window of the model-scale image, to be explained.
#[wasm_bindgen]
pub struct SlideWindow {
    image: RgbImage,
    bounds: WindowBounds,
}

impl SlideWindow {
    pub(super) fn image(&self) -> &RgbImage {
        &self.image
    }
}

#[wasm_bindgen]
impl SlideWindow {
    /// `{x, y, size}`: the window in the input's full-resolution pixels.
    pub fn bounds(&self) -> Result<JsValue, JsError> {
        to_js(&self.bounds)
    }
}

#[wasm_bindgen]
impl SlideJob {
    /// Opens a dropped file: TIFF and SVS are read tile by tile through slices of the file,
    /// other images are read whole and decoded. Call in a worker.
    pub fn open(file: web_sys::File) -> Result<SlideJob, JsError> {
        Self::open_files(js_sys::Array::of1(&file))
    }

    /// Opens the files of one slide: one file as [`SlideJob::open`] does, or the files of a
    /// DICOM whole-slide image dropped together (one per level, in any order; labels and
    /// overviews among them are skipped). Call in a worker.
    pub fn open_files(files: js_sys::Array) -> Result<SlideJob, JsError> {
        let files: Vec<web_sys::File> = files
            .iter()
            .map(|f| f.dyn_into::<web_sys::File>())
            .collect::<Result<_, _>>()
            .map_err(|_| JsError::new("open_files takes an array of File objects"))?;
        let Some(first) = files.first() else {
            return Err(JsError::new("no file to open"));
        };
        let name = match files.len() {
            1 => first.name(),
            n => format!("{} and {} more file(s)", first.name(), n - 1),
        };
        let readers = files
            .into_iter()
            .map(|file| {
                let file_name = file.name();
                FileSource::new(file.into())
                    .map(|source| BufReader::with_capacity(READ_BUFFER, source))
                    .map_err(|e| JsError::new(&format!("cannot read {file_name}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let input =
            OpenedImage::open_files(readers).map_err(|e| JsError::new(&format!("{name}: {e}")))?;
        Ok(SlideJob {
            name,
            input: Rc::new(input),
            analysis: RefCell::new(State::Unprepared),
        })
    }

    /// `{name, format, width, height, mpp, declared_mpp, slide, glimpse, levels: [{width,
    /// height, downsample}]}`: `format` names the file's format and compression, `mpp` is the file's plausible pixel size (or null), `declared_mpp` an
    /// implausible one it declares (a screen's dpi), `slide` whether it is read tile by tile,
    /// `glimpse` whether it is scored whole as one glimpse instead of window by window.
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
            format: &'a str,
            width: u32,
            height: u32,
            mpp: Option<f64>,
            declared_mpp: Option<f64>,
            slide: bool,
            glimpse: bool,
            levels: Vec<LevelInfo>,
        }
        let (width, height) = self.input.dimensions();
        let resolution = self.input.resolution();
        let level = |l: &Level| LevelInfo {
            width: l.width,
            height: l.height,
            downsample: l.downsample,
        };
        to_js(&Info {
            name: &self.name,
            format: self.input.format(),
            width,
            height,
            mpp: resolution.found(),
            declared_mpp: resolution.implausible(),
            slide: self.input.is_tiled(),
            glimpse: self.input.is_glimpse(),
            levels: self.input.levels().iter().map(level).collect(),
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
        let rgb = self
            .input
            .view((x0, y0, x1, y1), width, height)
            .map_err(js_error)?;
        Ok(Uint8Array::from(&rgba(&rgb)[..]))
    }

    /// Decides the pixel size (`mpp` typed by the user, or null for the file's), sees the
    /// image at the model's scale, finds its tissue and plans the dense pass at `stride`, scoring
    /// as `session` does (test-time augmentation or not). Returns the plan
    /// ([`crate::slide::Plan`]); an image without a pixel size is an error that says how to
    /// give one.
    pub fn prepare(
        &self,
        session: &Session,
        mpp: Option<f64>,
        stride: usize,
    ) -> Result<JsValue, JsError> {
        self.analysis.replace(State::Unprepared);
        let config = ScanConfig {
            stride,
            tile: PAGE_TILE,
            tta: session.classifier().tta(),
            ..ScanConfig::default()
        };
        let analysis = Analysis::new(self.input.clone(), mpp, None, config).map_err(js_error)?;
        let plan = to_js(&analysis.plan())?;
        self.analysis.replace(State::Ready(Box::new(analysis)));
        Ok(plan)
    }

    /// The tissue mask of the prepared run: one byte per cell, 1 where tissue is.
    pub fn tissue(&self) -> Result<Uint8Array, JsError> {
        self.with(|a| {
            let cells: Vec<u8> = a.tissue().data.iter().map(|&t| u8::from(t)).collect();
            Ok(Uint8Array::from(&cells[..]))
        })
    }

    /// `{rgb, width, height, kept, context}`: the model-scale RGB pixels tile `index` scores,
    /// and the windows whose logits it keeps (one byte per window of the crop, 1 where kept)
    /// with their context in px, to be scored by any worker's `Session.window_logits` at the
    /// plan's stride.
    pub fn crop(&self, index: usize) -> Result<JsValue, JsError> {
        let (crop, kept) = self.with(|a| {
            let crop = a.crop(index).map_err(js_error)?;
            Ok((crop, a.kept(index).map_err(js_error)?))
        })?;
        let out = js_sys::Object::new();
        set(&out, "rgb", &Uint8Array::from(crop.as_raw().as_slice()))?;
        set(&out, "width", &crop.width().into())?;
        set(&out, "height", &crop.height().into())?;
        let windows: Vec<u8> = kept.kept.iter().map(|&k| u8::from(k)).collect();
        set(&out, "kept", &Uint8Array::from(&windows[..]))?;
        set(&out, "context", &kept.context.into())?;
        Ok(out.into())
    }

    /// Keeps the window logits of tile `index` (from [`SlideJob::crop`]); returns how many
    /// windows it scored.
    pub fn accept(&self, index: usize, logits: Vec<f32>) -> Result<usize, JsError> {
        self.with_mut(|a| a.accept(index, &logits).map_err(js_error))
    }

    /// The model-scale pixels tile `index` computes: its share of the plan's `pixels`, the
    /// work that estimates of the time left follow.
    pub fn tile_pixels(&self, index: usize) -> Result<f64, JsError> {
        self.with(|a| {
            let tile = a.scan().tile(index).map_err(js_error)?;
            Ok(tile.pixels() as f64)
        })
    }

    /// Crops, scores (on `session`) and keeps tile `index`; returns how many windows it scored.
    pub async fn score_tile(&self, session: &Session, index: usize) -> Result<usize, JsError> {
        let mut analysis = self.take()?;
        let scored = analysis.score_tile(session.classifier(), index).await;
        self.put(analysis);
        scored.map_err(js_error)
    }

    /// Window probabilities so far, row-major over the grid; NaN where nothing was scored.
    pub fn probabilities(&self) -> Result<Float32Array, JsError> {
        self.with(|a| {
            let values: Vec<f32> = a
                .scan()
                .probabilities()
                .iter()
                .map(|p| p.unwrap_or(f32::NAN))
                .collect();
            Ok(Float32Array::from(&values[..]))
        })
    }

    /// The 96x96 window (model scale) centred as near `(x, y)` of the input as the image allows.
    pub fn window(&self, x: f64, y: f64) -> Result<SlideWindow, JsError> {
        self.with(|a| {
            let (point, _) = a.requested_window(x, y).map_err(js_error)?;
            let (origin, image) = a.window(&point).map_err(js_error)?;
            Ok(SlideWindow {
                image,
                bounds: a.window_bounds(origin),
            })
        })
    }

    /// Explains the windows of the `top_k` most probable tumour points (as `celnet heatmap
    /// --top-k` does) and returns everything `celnet heatmap` writes, for the run as scored so
    /// far: `{summary, geojson, csv, heatmap_png}`; `summary` has the fields of its
    /// `summary.json` plus `backend` and `weights`.
    pub async fn finish(&self, session: &Session, top_k: usize) -> Result<JsValue, JsError> {
        let mut analysis = self.take()?;
        let wanted = analysis.top_windows(top_k);
        let explained = analysis.explain(session.explainer(), &wanted).await;
        self.put(analysis);
        explained.map_err(js_error)?;
        self.with(|a| report(a, &self.name, session))
    }
}

impl SlideJob {
    fn with<T>(
        &self,
        f: impl FnOnce(&Analysis<Reader>) -> Result<T, JsError>,
    ) -> Result<T, JsError> {
        match &*self.analysis.borrow() {
            State::Ready(analysis) => f(analysis),
            other => Err(not_ready(other)),
        }
    }

    fn with_mut<T>(
        &self,
        f: impl FnOnce(&mut Analysis<Reader>) -> Result<T, JsError>,
    ) -> Result<T, JsError> {
        match &mut *self.analysis.borrow_mut() {
            State::Ready(analysis) => f(analysis),
            other => Err(not_ready(other)),
        }
    }

    fn take(&self) -> Result<Box<Analysis<Reader>>, JsError> {
        match self.analysis.replace(State::Busy) {
            State::Ready(analysis) => Ok(analysis),
            other => {
                let error = not_ready(&other);
                self.analysis.replace(other);
                Err(error)
            }
        }
    }

    /// Puts back an analysis taken for an asynchronous step, unless a new one was prepared
    /// meanwhile.
    fn put(&self, analysis: Box<Analysis<Reader>>) {
        let mut state = self.analysis.borrow_mut();
        if matches!(*state, State::Busy) {
            *state = State::Ready(analysis);
        }
    }
}

fn not_ready(state: &State) -> JsError {
    js_error(CelnetError::InvalidParameter(
        match state {
            State::Busy => "the image is busy with another step",
            _ => "the image has not been prepared for scoring",
        }
        .into(),
    ))
}

/// `celnet heatmap`'s outputs for `analysis`, with the session's backend and weights.
fn report(analysis: &Analysis<Reader>, name: &str, session: &Session) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Summary {
        #[serde(flatten)]
        report: crate::slide::HeatmapReport,
        backend: &'static str,
        weights: String,
    }
    let report = analysis.report(name.to_string());
    let geojson = analysis.geojson(&report.lesions).to_string();
    let summary = to_js(&Summary {
        report,
        backend: session.backend_name(),
        weights: session.weights(),
    })?;
    let out = js_sys::Object::new();
    set(&out, "summary", &summary)?;
    set(&out, "geojson", &JsValue::from_str(&geojson))?;
    set(&out, "csv", &JsValue::from_str(&analysis.tiles_csv()))?;
    let mut png = Vec::new();
    analysis
        .heatmap_picture()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| JsError::new(&format!("cannot encode the heatmap: {e}")))?;
    set(&out, "heatmap_png", &Uint8Array::from(&png[..]))?;
    Ok(out.into())
}
