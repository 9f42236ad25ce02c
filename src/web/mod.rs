//! Browser bindings (wasm32 only): platform glue, no model logic.
//!
//! The page's inference worker owns a [`Session`] (WebGPU or wasm CPU). [`Session::explain`]
//! returns an [`Explained`] handle that keeps the evidence in the worker's wasm memory; each
//! slider move calls [`Explained::render`] on it, which re-fuses CELM without another gradient
//! pass and returns only pixels. The page itself loads no WebAssembly: what it needs to know
//! (default parameters, map names, the colour legend) comes from [`page_facts`].

use std::cell::RefCell;

use burn::prelude::*;
use image::RgbImage;
use js_sys::{Float32Array, Object, Reflect, Uint8ClampedArray};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::classifier::{Classifier, DECISION_THRESHOLD, Prediction, Tta};
use crate::error::CelnetError;
use crate::explain::engine::ExplainPhases;
use crate::explain::render::{
    OUTLINE_COLOUR, OVERLAY_OPACITY, colormap_rgba, heat_rgba, legend_rgba, outline_rgba,
};
use crate::explain::{CelmParams, Explainer, MapKind, PreparedEvidence, Region};
use crate::timings::Timings;
use crate::{input, profile, weights};

mod file_source;
mod slide;

pub use slide::{SlideJob, SlideWindow};

thread_local! {
    // wgpu initialises once per page (per worker): the device is created once and reused.
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

unsafe extern "C" {
    /// The module's static constructors (cubecl registers its IR with `inventory` in them).
    fn __wasm_call_ctors();
}

#[wasm_bindgen(start)]
fn start() {
    // Run the constructors once, here. Without an explicit call, wasm-ld links the module as a
    // "command" and wraps *every* export in a constructor run: each JS value wasm-bindgen
    // creates then costs ~0.3 ms, and returning one explanation took 20 s instead of 0.4 s.
    // SAFETY: called once, at instantiation, before any other export.
    unsafe { __wasm_call_ctors() };
    // A panic aborts the wasm instance; log its message so the page can show more than
    // "unreachable".
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("celnet: {info}").into());
    }));
}

/// What the page shows that is decided here: `{default_params, map_kinds: [{name, title}],
/// decision_threshold, overlay_opacity, legend}` (`legend`: 256 RGBA entries of the colour map).
#[wasm_bindgen]
pub fn page_facts() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Kind {
        name: &'static str,
        title: &'static str,
    }
    #[derive(Serialize)]
    struct Facts {
        default_params: CelmParams,
        map_kinds: Vec<Kind>,
        decision_threshold: f32,
        overlay_opacity: f32,
    }
    let facts = to_js(&Facts {
        default_params: CelmParams::default(),
        map_kinds: MapKind::ALL
            .iter()
            .map(|k| Kind {
                name: k.name(),
                title: k.title(),
            })
            .collect(),
        decision_threshold: DECISION_THRESHOLD,
        overlay_opacity: OVERLAY_OPACITY,
    })?;
    set(&facts, "legend", &pixels(&legend_rgba()))?;
    Ok(facts)
}

/// The inference state of one worker: a device, the loaded weights, a classifier and an
/// explainer sharing them.
#[wasm_bindgen]
pub struct Session {
    explainer: Explainer,
    classifier: Classifier,
    backend: &'static str,
    weights: String,
    /// The default weights' burnpack bytes, kept for [`Session::reset_weights`].
    default_weights: Vec<u8>,
}

#[wasm_bindgen]
impl Session {
    /// A session on `backend`: `"webgpu"` (fails if WebGPU cannot be initialised: the caller
    /// falls back to `"cpu"`) or `"cpu"` (Burn's flex backend on wasm, SIMD), with the default
    /// weights' burnpack bytes (the page fetches `weights/celnet-pcam.bpk`; they are not in the
    /// wasm).
    pub async fn create(backend: String, default_weights: Vec<u8>) -> Result<Session, JsError> {
        let (device, backend) = match backend.as_str() {
            "webgpu" => (webgpu_device().await?, "webgpu"),
            "cpu" => (Device::flex(), "cpu"),
            other => {
                return Err(JsError::new(&format!(
                    "unknown backend {other:?}; use \"webgpu\" or \"cpu\""
                )));
            }
        };
        let model = weights::load_bytes(&default_weights, &device)
            .map_err(|e| JsError::new(&format!("the default weights: {e}")))?;
        let explainer = Explainer::new(model, &device);
        Ok(Session {
            classifier: explainer.classifier(),
            explainer,
            backend,
            weights: "default".into(),
            default_weights,
        })
    }

    /// `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.into()
    }

    /// Name of the loaded weights: `"default"` or the name given to [`Session::load_weights`].
    #[wasm_bindgen(getter)]
    pub fn weights(&self) -> String {
        self.weights.clone()
    }

    /// Replaces the weights with a burnpack file's bytes. A file of the wrong shape or a corrupt
    /// one is an error naming the problem, and the current weights stay.
    pub fn load_weights(&mut self, bytes: &[u8], name: String) -> Result<(), JsError> {
        let device = self.explainer.device().clone();
        let model = weights::load_bytes(bytes, &device).map_err(js_error)?;
        self.use_model(model, name);
        Ok(())
    }

    /// Test-time augmentation for scores (glimpses, slide windows): `true` averages the eight
    /// orientations of each image, eight times the work; `false` (the default) scores it as it
    /// is. Evidence maps are not affected.
    pub fn set_tta(&mut self, on: bool) {
        self.classifier = self.classifier.clone().with_tta(Tta::when(on));
    }

    /// Goes back to the default weights.
    pub fn reset_weights(&mut self) -> Result<(), JsError> {
        let device = self.explainer.device().clone();
        let model = weights::load_bytes(&self.default_weights, &device).map_err(js_error)?;
        self.use_model(model, "default".into());
        Ok(())
    }

    /// The score of an encoded image: `{backend, weights, width, height, logit, probability,
    /// label, verdict, timings_ms}`.
    pub async fn predict(&self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        let start = now_ms();
        let image = input::decode_image(&bytes).map_err(js_error)?;
        let decoded = now_ms();
        let prediction = self.classifier.predict(&image).await.map_err(js_error)?;
        let done = now_ms();
        to_js(&self.summary(
            &image,
            prediction,
            Timings {
                decode: decoded - start,
                network: done - decoded,
                total: done - start,
                ..Timings::default()
            },
        ))
    }

    /// The gradient passes of CELM on an encoded image. The evidence stays in this instance's
    /// memory, behind the returned handle; call `free()` on it when the result is dropped.
    pub async fn explain(&self, bytes: Vec<u8>) -> Result<Explained, JsError> {
        let start = now_ms();
        let image = input::decode_image(&bytes).map_err(js_error)?;
        let decoded = now_ms();
        let evidence = self.explainer.evidence(&image).await.map_err(js_error)?;
        let evidence = PreparedEvidence::new(evidence, &[CelmParams::default().sigma]);
        // The gradient passes score the image as it is; with test-time augmentation the shown
        // score is the augmented one, as for `predict`.
        let prediction = match self.classifier.tta() {
            Tta::Off => evidence.prediction,
            Tta::Dihedral => self.classifier.predict(&image).await.map_err(js_error)?,
        };
        let done = now_ms();
        let summary = self.summary(
            &image,
            prediction,
            Timings {
                decode: decoded - start,
                network: done - decoded,
                total: done - start,
                ..Timings::default()
            },
        );
        Ok(Explained {
            summary,
            evidence,
            image,
            origin: None,
        })
    }

    /// The window logits of a model-scale crop (`width` x `height` RGB bytes, a
    /// [`SlideJob::crop`]) at `stride`: one dense pass, row-major over its windows.
    pub async fn window_logits(
        &self,
        rgb: Vec<u8>,
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<Float32Array, JsError> {
        let crop = RgbImage::from_raw(width, height, rgb)
            .ok_or_else(|| JsError::new("the crop's size does not match its pixels"))?;
        let input = Tensor::<4>::from_data(input::to_tensor_data(&crop), self.explainer.device());
        let logits = self
            .classifier
            .window_logits(input, stride)
            .await
            .map_err(js_error)?;
        Ok(Float32Array::from(&logits[..]))
    }

    /// The logits of a batch of same-sized images in one forward pass: `rgb` holds the
    /// images' `width` x `height` RGB bytes one after another.
    pub async fn logits_batch(
        &self,
        rgb: Vec<u8>,
        width: u32,
        height: u32,
    ) -> Result<Float32Array, JsError> {
        let size = (width * height * 3) as usize;
        if size == 0 || !rgb.len().is_multiple_of(size) {
            return Err(JsError::new("the batch is not a whole number of images"));
        }
        let count = rgb.len() / size;
        let mut values = Vec::with_capacity(rgb.len());
        for pixels in rgb.chunks_exact(size) {
            let image = RgbImage::from_raw(width, height, pixels.to_vec())
                .ok_or_else(|| JsError::new("the image's size does not match its pixels"))?;
            values.extend(input::normalise(&image));
        }
        let shape = [count, 3, height as usize, width as usize];
        let images =
            Tensor::<4>::from_data(TensorData::new(values, shape), self.explainer.device());
        let logits = self.classifier.logits(images).await.map_err(js_error)?;
        Ok(Float32Array::from(&logits[..]))
    }

    /// Where a forward pass's time goes (the bench page): `{parts: [[kind, ms]], total}` for one
    /// prediction on the decoded `bytes`, by kind of operation (see [`crate::profile`]).
    pub async fn forward_profile(&self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        let image = input::decode_image(&bytes).map_err(js_error)?;
        let (logits, profile) = profile::profiled(now_ms, || {
            let x = Tensor::<4>::from_data(input::to_tensor_data(&image), self.explainer.device());
            self.classifier.model().forward(x)
        });
        // Reading is outside the profile: on the CPU the values are ready, nothing is pending.
        crate::classifier::read(logits).await.map_err(js_error)?;
        to_js(&profile)
    }

    /// Where an explanation's time goes (the bench page): `{forward, grad_cam_backward,
    /// guided_backward, read, prepare, fuse}` in milliseconds, `prepare` being the smoothing
    /// done once per explanation and `fuse` one fusion with the default parameters.
    pub async fn explain_phases(&self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        struct Phases {
            #[serde(flatten)]
            gradients: ExplainPhases,
            prepare: f64,
            fuse: f64,
        }
        let image = input::decode_image(&bytes).map_err(js_error)?;
        let (evidence, gradients) = self
            .explainer
            .evidence_timed(&image, &now_ms)
            .await
            .map_err(js_error)?;
        let start = now_ms();
        let params = CelmParams::default();
        let evidence = PreparedEvidence::new(evidence, &[params.sigma]);
        let prepared = now_ms();
        evidence.fuse(&params).map_err(js_error)?;
        to_js(&Phases {
            gradients,
            prepare: prepared - start,
            fuse: now_ms() - prepared,
        })
    }

    /// CELM of a window of a slide ([`SlideJob::window`]), kept like [`Session::explain`]'s.
    pub async fn explain_window(&self, window: &SlideWindow) -> Result<Explained, JsError> {
        let start = now_ms();
        let evidence = self
            .explainer
            .evidence(&window.image)
            .await
            .map_err(js_error)?;
        let evidence = PreparedEvidence::new(evidence, &[CelmParams::default().sigma]);
        let done = now_ms();
        let summary = self.summary(
            &window.image,
            evidence.prediction,
            Timings {
                network: done - start,
                total: done - start,
                ..Timings::default()
            },
        );
        Ok(Explained {
            summary,
            evidence,
            image: window.image.clone(),
            origin: Some(window.origin),
        })
    }
}

impl Session {
    fn use_model(&mut self, model: crate::Celnet, name: String) {
        let device = self.explainer.device().clone();
        let tta = self.classifier.tta();
        self.explainer = Explainer::new(model, &device);
        self.classifier = self.explainer.classifier().with_tta(tta);
        self.weights = name;
    }

    fn summary(&self, image: &RgbImage, prediction: Prediction, timings: Timings) -> Summary {
        Summary {
            backend: self.backend,
            weights: self.weights.clone(),
            width: image.width(),
            height: image.height(),
            prediction,
            verdict: prediction.label.verdict(),
            tta: self.classifier.tta(),
            timings_ms: timings,
        }
    }
}

/// What the page shows about one result.
#[derive(Clone, Serialize)]
struct Summary {
    backend: &'static str,
    weights: String,
    width: u32,
    height: u32,
    #[serde(flatten)]
    prediction: Prediction,
    verdict: &'static str,
    /// `"off"` or `"dihedral"`: whether the score averages the eight orientations.
    tta: Tta,
    timings_ms: Timings,
}

/// One explained image, kept in the worker: its evidence, ready to be re-fused, and the
/// decoded input.
#[wasm_bindgen]
pub struct Explained {
    summary: Summary,
    evidence: PreparedEvidence,
    image: RgbImage,
    /// Top-left corner of the window in its slide's model-scale image, for windows of a slide.
    origin: Option<(usize, usize)>,
}

#[wasm_bindgen]
impl Explained {
    /// `{backend, weights, width, height, logit, probability, label, verdict, timings_ms}`.
    pub fn summary(&self) -> Result<JsValue, JsError> {
        to_js(&self.summary)
    }

    /// The decoded input as RGBA bytes (so formats the browser cannot show, such as TIFF, still
    /// display).
    pub fn input_rgba(&self) -> Uint8ClampedArray {
        pixels(&rgba(&self.image))
    }

    /// Fuses the evidence with CELM parameters (`{alpha, beta, threshold, sigma}`, any subset;
    /// the rest default) and renders every layer the page draws.
    ///
    /// Returns `{params, regions, timings_ms, celm, layers}`: `celm` is the evidence map as a
    /// `Float32Array`; `layers` holds RGBA bytes for each map kind (opaque, in the colour map),
    /// `heat` (the CELM with alpha = evidence, drawn over the input at the overlay opacity) and
    /// `outline` (the region boundaries).
    pub fn render(&self, params: JsValue) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        struct Rendered<'a> {
            params: CelmParams,
            regions: &'a [Region],
            timings_ms: Timings,
        }
        let params: CelmParams = if params.is_undefined() || params.is_null() {
            CelmParams::default()
        } else {
            serde_wasm_bindgen::from_value(params)
                .map_err(|e| JsError::new(&format!("bad CELM parameters: {e}")))?
        };
        let start = now_ms();
        let explanation = self.evidence.fuse(&params).map_err(js_error)?;
        let fusion = now_ms() - start;
        let base = self.summary.timings_ms;
        let result = to_js(&Rendered {
            params: explanation.params,
            regions: &explanation.regions,
            timings_ms: Timings {
                fusion: Some(fusion),
                total: base.total + fusion,
                ..base
            },
        })?;
        set(
            &result,
            "celm",
            &Float32Array::from(&explanation.celm.data[..]),
        )?;
        let layers = Object::new();
        for (kind, map) in explanation.maps() {
            set(&layers, kind.name(), &pixels(&colormap_rgba(map)))?;
        }
        set(&layers, "heat", &pixels(&heat_rgba(&explanation.celm)))?;
        set(
            &layers,
            "outline",
            &pixels(&outline_rgba(&explanation.mask, OUTLINE_COLOUR)),
        )?;
        set(&result, "layers", &layers)?;
        Ok(result)
    }
}

async fn webgpu_device() -> Result<Device, JsError> {
    if let Some(device) = WEBGPU.with_borrow(Clone::clone) {
        return Ok(device);
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| JsError::new(&format!("WebGPU is not available: {e}")))?;
    WEBGPU.set(Some(device.clone()));
    Ok(device)
}

/// Opaque RGBA bytes of an RGB image, as `ImageData` takes them.
fn rgba(image: &RgbImage) -> Vec<u8> {
    image
        .pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
        .collect()
}

fn pixels(data: &[u8]) -> Uint8ClampedArray {
    Uint8ClampedArray::from(data)
}

fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&format!("could not pass a result to JavaScript: {e}")))
}

fn set(target: &JsValue, key: &str, value: &JsValue) -> Result<(), JsError> {
    Reflect::set(target, &JsValue::from_str(key), value)
        .map(drop)
        .map_err(|_| JsError::new("could not build a result object"))
}

fn js_error(error: CelnetError) -> JsError {
    JsError::new(&error.to_string())
}

/// Milliseconds from the page's (or worker's) `performance.now()`.
fn now_ms() -> f64 {
    let global = js_sys::global();
    Reflect::get(&global, &JsValue::from_str("performance"))
        .ok()
        .and_then(|performance| {
            let now = Reflect::get(&performance, &JsValue::from_str("now")).ok()?;
            now.dyn_into::<js_sys::Function>()
                .ok()?
                .call0(&performance)
                .ok()?
                .as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}
