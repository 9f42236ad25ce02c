//! What only the bench page calls (`www/bench.html`): the network alone on a batch, and where a
//! forward pass's and an explanation's time go. Kept apart from the page's [`Session`] API.

use image::RgbImage;
use js_sys::Float32Array;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{Session, js_error, now_ms, to_js};
use crate::explain::engine::ExplainPhases;
use crate::explain::{CelmParams, PreparedEvidence};
use crate::input;
use crate::network::classifier::Tta;
use crate::network::profile::Profile;
use crate::slide::scan::{DENSE_CONTEXT, PAGE_TILE};

/// The logits of a batch of same-sized images in one forward pass: `rgb` holds the images'
/// `width` x `height` RGB bytes one after another.
#[wasm_bindgen]
pub async fn bench_logits_batch(
    session: &Session,
    rgb: Vec<u8>,
    width: u32,
    height: u32,
) -> Result<Float32Array, JsError> {
    let size = (width * height * 3) as usize;
    if size == 0 || !rgb.len().is_multiple_of(size) {
        return Err(JsError::new("the batch is not a whole number of images"));
    }
    let images = rgb
        .chunks_exact(size)
        .map(|pixels| RgbImage::from_raw(width, height, pixels.to_vec()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| JsError::new("the image's size does not match its pixels"))?;
    let logits = session
        .classifier()
        .image_logits(&images)
        .await
        .map_err(js_error)?;
    Ok(Float32Array::from(&logits[..]))
}

/// Where a forward pass's time goes: `{parts: [[kind, ms]], total}` for one prediction on the
/// decoded `bytes`, by kind of operation (see [`crate::network::profile`]).
#[wasm_bindgen]
pub async fn bench_forward_profile(session: &Session, bytes: Vec<u8>) -> Result<JsValue, JsError> {
    let image = input::decode_image(&bytes).map_err(js_error)?;
    let profile = session
        .classifier()
        .profile_forward(&image, now_ms)
        .await
        .map_err(js_error)?;
    to_js(&profile)
}

/// Where one tile of the slide view's dense pass spends its time: the decoded `bytes` repeated
/// over a full tile's crop of the page ([`PAGE_TILE`] px of windows and [`DENSE_CONTEXT`] px of context on
/// each side), scored once to warm up, then profiled at `stride` without test-time augmentation:
/// `{side, parts: [[kind, ms]], total}`.
#[wasm_bindgen]
pub async fn bench_dense_profile(
    session: &Session,
    bytes: Vec<u8>,
    stride: usize,
) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct DenseProfile {
        side: usize,
        #[serde(flatten)]
        profile: Profile,
    }
    let patch = input::decode_image(&bytes).map_err(js_error)?;
    let side = PAGE_TILE + 2 * DENSE_CONTEXT;
    let mut crop = RgbImage::new(side as u32, side as u32);
    for y in (0..side).step_by(patch.height() as usize) {
        for x in (0..side).step_by(patch.width() as usize) {
            image::imageops::replace(&mut crop, &patch, x as i64, y as i64);
        }
    }
    let classifier = session.classifier().clone().with_tta(Tta::Off);
    classifier
        .crop_window_logits(&crop, stride, None)
        .await
        .map_err(js_error)?;
    let profile = classifier
        .profile_window_logits(&crop, stride, now_ms)
        .await
        .map_err(js_error)?;
    to_js(&DenseProfile { side, profile })
}

/// Where an explanation's time goes: `{forward, grad_cam_backward, guided_backward, read,
/// prepare, fuse}` in milliseconds, `prepare` being the smoothing done once per explanation and
/// `fuse` one fusion with the default parameters.
#[wasm_bindgen]
pub async fn bench_explain_phases(session: &Session, bytes: Vec<u8>) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Phases {
        #[serde(flatten)]
        gradients: ExplainPhases,
        prepare: f64,
        fuse: f64,
    }
    let image = input::decode_image(&bytes).map_err(js_error)?;
    let (evidence, gradients) = session
        .explainer()
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
