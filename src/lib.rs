//! CELNet + CELM: metastasis detection and evidence localisation for H&E glimpses.
//!
//! The core (model, explanation engine, maps, regions, rendering, weights) is platform-free and
//! runs on any Burn device: natively on the CPU (`flex`) or a GPU (`wgpu`), and in the browser
//! on WebGPU or wasm CPU. Data loading, training and charts are native-only.

pub mod error;
pub mod explain;
pub mod faithfulness;
pub mod guided;
pub mod input;
pub mod localize;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod regions;
pub mod render;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod mosaic;
#[cfg(not(target_arch = "wasm32"))]
pub mod plot;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{CelnetError, Result};
pub use explain::{CelmParams, Engine, Evidence, Explanation};
pub use model::{Celnet, CelnetConfig};
