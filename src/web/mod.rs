//! Browser bindings (wasm32 only): platform glue over the library, no model logic.
//!
//! The page's inference worker owns a [`Session`] (WebGPU or wasm CPU). [`Session::explain`]
//! returns an [`Explained`] handle that keeps the evidence in the worker's wasm memory; each
//! slider move calls [`Explained::render`] on it, which re-fuses CELM without another gradient
//! pass and returns only pixels. Large images and slides are a [`SlideJob`], an adapter over
//! [`crate::slide::Analysis`]. The page itself loads no WebAssembly: what it needs to know
//! comes from [`page_facts`]. The bench page's measurements are in [`bench`].

use js_sys::{Reflect, Uint8ClampedArray};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::error::CelnetError;
use crate::explain::render::legend_rgba;
use crate::facts::PageFacts;

pub mod bench;
mod explained;
mod file_source;
mod session;
mod slide;

pub use explained::Explained;
pub use session::Session;
pub use slide::{SlideJob, SlideWindow};

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

/// What the page shows that the crate decides ([`PageFacts`]), with `legend`: 256 RGBA
/// entries of the colour map.
#[wasm_bindgen]
pub fn page_facts() -> Result<JsValue, JsError> {
    let facts = to_js(&PageFacts::get())?;
    set(&facts, "legend", &pixels(&legend_rgba()))?;
    Ok(facts)
}

/// Opaque RGBA bytes of an RGB image, as `ImageData` takes them.
fn rgba(image: &image::RgbImage) -> Vec<u8> {
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
