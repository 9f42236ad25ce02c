//! The inference state of one worker: a device, the loaded weights, a classifier and an
//! explainer sharing them.

use std::cell::RefCell;

use burn::prelude::*;
use image::RgbImage;
use js_sys::Float32Array;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::explained::Explained;
use super::slide::SlideWindow;
use super::{js_error, now_ms, to_js};
use crate::explain::{CelmParams, Explainer, PreparedEvidence};
use crate::network::active_area::KeptWindows;
use crate::network::classifier::{Classifier, Prediction, Tta};
use crate::timings::Timings;
use crate::{input, weights};

thread_local! {
    // wgpu initialises once per page (per worker): the device is created once and reused.
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// The model on one backend with its weights.
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
    /// label, verdict, tta, timings_ms}`.
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
        let decoded = now_ms() - start;
        self.explained(image, start, decoded).await
    }

    /// CELM of a window of a slide ([`super::SlideJob::window`]), kept like
    /// [`Session::explain`]'s.
    pub async fn explain_window(&self, window: &SlideWindow) -> Result<Explained, JsError> {
        self.explained(window.image().clone(), now_ms(), 0.0).await
    }

    /// The window logits of a model-scale crop (`width` x `height` RGB bytes, a
    /// [`super::SlideJob::crop`]) at `stride`, with test-time augmentation `tta` (`"off"` or
    /// `"dihedral"`, as the slide's plan says): one dense pass, row-major over its windows.
    /// `kept` (one byte per window, nonzero where its logit is kept; empty for every window)
    /// and `context` (px) say what the pass must compute. A stride or a size the windows
    /// cannot align with is an error.
    #[allow(clippy::too_many_arguments)] // the crop, its windows and the plan's settings
    pub async fn window_logits(
        &self,
        rgb: Vec<u8>,
        width: u32,
        height: u32,
        stride: usize,
        tta: JsValue,
        kept: Vec<u8>,
        context: usize,
    ) -> Result<Float32Array, JsError> {
        let crop = RgbImage::from_raw(width, height, rgb)
            .ok_or_else(|| JsError::new("the crop's size does not match its pixels"))?;
        let kept = (!kept.is_empty()).then(|| KeptWindows {
            kept: kept.iter().map(|&k| k != 0).collect(),
            context,
        });
        let tta: Tta = serde_wasm_bindgen::from_value(tta)
            .map_err(|e| JsError::new(&format!("bad test-time augmentation: {e}")))?;
        let logits = self
            .classifier
            .clone()
            .with_tta(tta)
            .crop_window_logits(&crop, stride, kept.as_ref())
            .await
            .map_err(js_error)?;
        Ok(Float32Array::from(&logits[..]))
    }
}

impl Session {
    pub(super) fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    pub(super) fn explainer(&self) -> &Explainer {
        &self.explainer
    }

    pub(super) fn backend_name(&self) -> &'static str {
        self.backend
    }

    fn use_model(&mut self, model: crate::Celnet, name: String) {
        let device = self.explainer.device().clone();
        let tta = self.classifier.tta();
        self.explainer = Explainer::new(model, &device);
        self.classifier = self.explainer.classifier().with_tta(tta);
        self.weights = name;
    }

    /// Explains `image` (a whole image, or a window of a slide) and keeps the evidence. The gradient passes score the image as it is; with test-time augmentation the
    /// score shown is the augmented one, as for `predict`.
    async fn explained(
        &self,
        image: RgbImage,
        start: f64,
        decode: f64,
    ) -> Result<Explained, JsError> {
        let evidence = self.explainer.evidence(&image).await.map_err(js_error)?;
        let evidence = PreparedEvidence::new(evidence, &[CelmParams::default().sigma]);
        let prediction = match self.classifier.tta() {
            Tta::Off => evidence.prediction,
            Tta::Dihedral => self.classifier.predict(&image).await.map_err(js_error)?,
        };
        let done = now_ms();
        let summary = self.summary(
            &image,
            prediction,
            Timings {
                decode,
                network: done - start - decode,
                total: done - start,
                ..Timings::default()
            },
        );
        Ok(Explained::new(summary, evidence, image))
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
pub(super) struct Summary {
    backend: &'static str,
    weights: String,
    width: u32,
    height: u32,
    #[serde(flatten)]
    prediction: Prediction,
    verdict: &'static str,
    /// `"off"` or `"dihedral"`: whether the score averages the eight orientations.
    tta: Tta,
    pub(super) timings_ms: Timings,
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
