//! CELNet + CELM: metastasis detection and evidence localisation for H&E images, from a glimpse
//! to a whole slide.
//!
//! The core is platform-free and runs on any Burn device: natively on the CPU (`flex`) or a GPU
//! (`wgpu`), and in the browser on WebGPU or wasm CPU. It is grouped as the README's layout
//! table describes:
//! - [`network`]: CELNet, the classifier and the kernels written for speed;
//! - [`explain`]: CELM, the evidence maps and their regions;
//! - [`slide`]: images larger than a glimpse, from opening the file to the report;
//! - [`input`], [`weights`], [`facts`], [`timings`], [`error`]: image files, weights, what the
//!   page shows that the crate decides, timing fields, errors.
//!
//! Native only: [`train`] (data, training, evaluation, calibration, charts), [`cohort`] (many
//! slides' results merged), [`studies`]
//! (localisation, faithfulness, synthetic slides), [`metrics`], the page server ([`serve`]) and
//! the binaries' allocator ([`memory`]). The browser bindings ([`web`]) are wasm32 only.

pub mod error;
pub mod explain;
pub mod facts;
pub mod input;
pub mod network;
pub mod slide;
pub mod timings;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod cohort;
#[cfg(not(target_arch = "wasm32"))]
pub mod memory;
#[cfg(not(target_arch = "wasm32"))]
pub mod metrics;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
#[cfg(not(target_arch = "wasm32"))]
pub mod studies;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{CelnetError, Result};
pub use explain::{CelmParams, Evidence, Explainer, Explanation, PreparedEvidence};
pub use network::{Celnet, CelnetConfig, Classifier, Label, Prediction};
