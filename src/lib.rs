//! CELNet + CELM: metastasis detection and evidence localisation for H&E glimpses.
//!
//! The core (model, classifier, explanation, input, weights, localisation scores) is
//! platform-free and runs on any Burn device: natively on the CPU (`flex`) or a GPU (`wgpu`),
//! and in the browser on WebGPU or wasm CPU. Data loading, evaluation, training, charts and the
//! page server are native-only; the browser bindings are wasm32-only.

pub mod calibration;
pub mod classifier;
pub mod conv;
pub mod error;
pub mod explain;
pub mod export;
pub mod faithfulness;
pub mod guided;
pub mod heatmap;
pub mod input;
pub mod localize;
pub mod max_reduce;
pub mod metrics;
pub mod model;
pub mod profile;
pub mod scale;
pub mod slide;
pub mod stain;
pub mod timings;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod evaluation;
#[cfg(not(target_arch = "wasm32"))]
pub mod mosaic;
#[cfg(not(target_arch = "wasm32"))]
pub mod plot;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
#[cfg(not(target_arch = "wasm32"))]
pub mod slide_mosaic;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use classifier::{Classifier, Label, Prediction};
pub use error::{CelnetError, Result};
pub use explain::{CelmParams, Evidence, Explainer, Explanation, PreparedEvidence};
pub use model::{Celnet, CelnetConfig};
