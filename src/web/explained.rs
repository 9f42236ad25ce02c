//! One explained image, kept in the worker: its evidence ready to be re-fused for new slider
//! positions without another gradient pass, and the decoded input.

use image::RgbImage;
use js_sys::{Float32Array, Object, Uint8ClampedArray};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::session::Summary;
use super::{js_error, now_ms, pixels, rgba, set, to_js};
use crate::explain::render::{OUTLINE_COLOUR, colormap_rgba, heat_rgba, outline_rgba};
use crate::explain::{CelmParams, PreparedEvidence, Region};
use crate::timings::Timings;

/// One explained image, kept in the worker: its evidence, ready to be re-fused, and the
/// decoded input.
#[wasm_bindgen]
pub struct Explained {
    summary: Summary,
    evidence: PreparedEvidence,
    image: RgbImage,
}

impl Explained {
    pub(super) fn new(summary: Summary, evidence: PreparedEvidence, image: RgbImage) -> Explained {
        Explained {
            summary,
            evidence,
            image,
        }
    }
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
