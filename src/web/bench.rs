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
use crate::slide::file::colour::to_rgb;
use crate::slide::file::jpeg2000;
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

/// JPEG 2000 tile decoding as the slide reader does it in this worker, for a same-tiles ratio
/// with the native `cargo bench --bench jpeg2000`: every codestream in `tiles` decoded (with
/// the colour conversion of TIFF compression `compression`, 33003 adding YCbCr to RGB) once to
/// warm up, then `rounds` times: `{tiles, pixels, tiles_per_s: [one per round]}`.
#[wasm_bindgen]
pub fn bench_jpeg2000_tiles(
    tiles: Vec<js_sys::Uint8Array>,
    compression: u16,
    rounds: u32,
) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct TileRates {
        tiles: usize,
        pixels: usize,
        tiles_per_s: Vec<f64>,
    }
    if !jpeg2000::is_jpeg2000(compression) {
        return Err(JsError::new(&format!(
            "{compression} is not a JPEG 2000 TIFF compression"
        )));
    }
    // Any tile a slide would hold; larger codestreams are refused as the slide reader does.
    const LARGEST_TILE: (u32, u32) = (4096, 4096);
    let tiles: Vec<Vec<u8>> = tiles.iter().map(|t| t.to_vec()).collect();
    let ycbcr = jpeg2000::holds_ycbcr(compression);
    let decode_all = || -> Result<usize, JsError> {
        let mut pixels = 0;
        for tile in &tiles {
            let chunk = jpeg2000::decode(tile, ycbcr, LARGEST_TILE).map_err(js_error)?;
            let rgb =
                to_rgb(chunk.samples, chunk.colour, chunk.width, chunk.height).map_err(js_error)?;
            pixels += rgb.len() / 3;
        }
        Ok(pixels)
    };
    let pixels = decode_all()?;
    let mut tiles_per_s = Vec::new();
    for _ in 0..rounds {
        let start = now_ms();
        decode_all()?;
        tiles_per_s.push(tiles.len() as f64 / ((now_ms() - start) / 1000.0));
    }
    to_js(&TileRates {
        tiles: tiles.len(),
        pixels,
        tiles_per_s,
    })
}
