//! Browser bindings (wasm32 only): platform glue, no model logic.
//!
//! The page's inference worker owns a [`Session`] (WebGPU or wasm CPU) and calls
//! [`Session::explain`]; the page itself calls [`render`] on the returned evidence whenever a
//! slider moves, which re-fuses CELM without another gradient pass.

use std::cell::RefCell;

use burn::prelude::*;
use image::RgbImage;
use js_sys::{Object, Reflect, Uint8Array, Uint8ClampedArray};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::error::CelnetError;
use crate::explain::{CelmParams, Engine, Evidence, sigmoid};
use crate::regions::Region;
use crate::{input, render, weights};

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

/// The inference state of one worker: a device, the loaded weights and the engine.
#[wasm_bindgen]
pub struct Session {
    engine: Engine,
    backend: &'static str,
    weights: String,
}

#[wasm_bindgen]
impl Session {
    /// A session on `backend`: `"webgpu"` (fails if WebGPU cannot be initialised: the caller
    /// falls back to `"cpu"`) or `"cpu"` (Burn's flex backend on wasm, SIMD).
    pub async fn create(backend: String) -> Result<Session, JsError> {
        let (device, backend) = match backend.as_str() {
            "webgpu" => (webgpu_device().await?, "webgpu"),
            "cpu" => (Device::flex(), "cpu"),
            other => {
                return Err(JsError::new(&format!(
                    "unknown backend {other:?}; use \"webgpu\" or \"cpu\""
                )));
            }
        };
        let model = weights::load_default(&device).map_err(js_error)?;
        Ok(Session {
            engine: Engine::new(model, &device),
            backend,
            weights: "default".into(),
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
        let device = self.engine.device().clone();
        let model = weights::load_bytes(bytes, &device).map_err(js_error)?;
        self.engine = Engine::new(model, &device);
        self.weights = name;
        Ok(())
    }

    /// Goes back to the embedded default weights.
    pub fn reset_weights(&mut self) -> Result<(), JsError> {
        let device = self.engine.device().clone();
        self.engine = Engine::new(weights::load_default(&device).map_err(js_error)?, &device);
        self.weights = "default".into();
        Ok(())
    }

    /// Cancer logit and probability of an encoded image, with timings.
    pub async fn predict(&self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        let start = now_ms();
        let image = input::decode_image(&bytes).map_err(js_error)?;
        let decoded = now_ms();
        let logit = self.engine.predict(&image).await.map_err(js_error)?;
        let done = now_ms();
        to_js(&Prediction {
            backend: self.backend,
            width: image.width(),
            height: image.height(),
            logit,
            probability: sigmoid(logit),
            timings: Timings {
                decode_ms: decoded - start,
                network_ms: done - decoded,
                total_ms: done - start,
            },
        })
    }

    /// The gradient passes of CELM on an encoded image.
    ///
    /// Returns `{backend, weights, width, height, logit, probability, timings, evidence, input}`:
    /// `evidence` goes to [`render`] as often as the parameters change, `input` is the decoded
    /// image as RGBA bytes (so formats the browser cannot show, such as TIFF, still display).
    pub async fn explain(&self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        let start = now_ms();
        let image = input::decode_image(&bytes).map_err(js_error)?;
        let decoded = now_ms();
        let evidence = self.engine.evidence(&image).await.map_err(js_error)?;
        let done = now_ms();
        let result = to_js(&Explained {
            backend: self.backend,
            weights: &self.weights,
            width: image.width(),
            height: image.height(),
            logit: evidence.logit,
            probability: sigmoid(evidence.logit),
            timings: Timings {
                decode_ms: decoded - start,
                network_ms: done - decoded,
                total_ms: done - start,
            },
            evidence: &evidence,
        })?;
        set(
            &result,
            "input",
            &Uint8ClampedArray::from(&rgba(&image)[..]),
        )?;
        Ok(result)
    }
}

/// Fuses evidence from [`Session::explain`] with CELM parameters (`{alpha, beta, threshold,
/// sigma}`, any subset; the rest default) and renders every layer the page draws.
///
/// Returns `{logit, probability, params, regions, width, height, celm, layers}`: `celm` is the
/// evidence map as a `Float32Array`, and `layers` holds RGBA bytes for `cam2`, `cam3`, `csm`,
/// `mc`, `celm` (opaque, in the colour map), `heat` (the CELM with alpha = evidence, drawn over
/// the input at the overlay opacity) and `outline` (the region boundaries).
#[wasm_bindgen]
pub fn render(evidence: JsValue, params: JsValue) -> Result<JsValue, JsError> {
    let evidence: Evidence = serde_wasm_bindgen::from_value(evidence)
        .map_err(|e| JsError::new(&format!("not evidence from explain(): {e}")))?;
    let params: CelmParams = if params.is_undefined() || params.is_null() {
        CelmParams::default()
    } else {
        serde_wasm_bindgen::from_value(params)
            .map_err(|e| JsError::new(&format!("bad CELM parameters: {e}")))?
    };
    let explanation = evidence.fuse(&params).map_err(js_error)?;
    let result = to_js(&Rendered {
        logit: explanation.logit,
        probability: explanation.probability,
        params: explanation.params,
        regions: &explanation.regions,
        width: evidence.width,
        height: evidence.height,
    })?;
    set(
        &result,
        "celm",
        &js_sys::Float32Array::from(&explanation.celm.data[..]),
    )?;
    let layers = Object::new();
    for (name, map) in explanation.named_maps() {
        set(&layers, name, &bytes(&render::colormap_rgba(map)))?;
    }
    set(
        &layers,
        "heat",
        &bytes(&render::heat_rgba(&explanation.celm)),
    )?;
    set(
        &layers,
        "outline",
        &bytes(&render::outline_rgba(
            &explanation.mask,
            render::OUTLINE_COLOUR,
        )),
    )?;
    set(&result, "layers", &layers)?;
    Ok(result)
}

/// The default CELM parameters (the page's initial slider positions).
#[wasm_bindgen]
pub fn default_params() -> Result<JsValue, JsError> {
    to_js(&CelmParams::default())
}

/// The colour map as 256 RGBA entries, for the legend.
#[wasm_bindgen]
pub fn colormap_legend() -> Uint8ClampedArray {
    let ramp: Vec<u8> = (0..256)
        .flat_map(|i| {
            let [r, g, b] = render::color(i as f32 / 255.0);
            [r, g, b, 255]
        })
        .collect();
    Uint8ClampedArray::from(&ramp[..])
}

/// The embedded default weights, for "download the model".
#[wasm_bindgen]
pub fn default_weights() -> Uint8Array {
    Uint8Array::from(weights::DEFAULT_WEIGHTS)
}

#[derive(Serialize)]
struct Timings {
    decode_ms: f64,
    network_ms: f64,
    total_ms: f64,
}

#[derive(Serialize)]
struct Prediction {
    backend: &'static str,
    width: u32,
    height: u32,
    logit: f32,
    probability: f32,
    timings: Timings,
}

#[derive(Serialize)]
struct Explained<'a> {
    backend: &'static str,
    weights: &'a str,
    width: u32,
    height: u32,
    logit: f32,
    probability: f32,
    timings: Timings,
    evidence: &'a Evidence,
}

#[derive(Serialize)]
struct Rendered<'a> {
    logit: f32,
    probability: f32,
    params: CelmParams,
    regions: &'a [Region],
    width: usize,
    height: usize,
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

fn rgba(image: &RgbImage) -> Vec<u8> {
    image
        .pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
        .collect()
}

fn bytes(data: &[u8]) -> Uint8ClampedArray {
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
