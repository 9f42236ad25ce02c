//! CELM, the evidence maps of CELNet: gradient passes on the network ([`engine`]), fusion of
//! their results into maps ([`fusion`], [`maps`]), regions ([`regions`]) and pictures
//! ([`render`]).
//!
//! The gradient passes run on any Burn device; everything after them runs on the CPU, so new
//! parameters never touch the network again.

pub mod engine;
pub mod fusion;
pub mod maps;
pub mod params;
pub mod regions;
pub mod render;

pub use engine::{Explainer, MAX_EXPLAIN_PIXELS};
pub use fusion::{Evidence, Explanation, MapKind, PreparedEvidence};
pub use maps::Map;
pub use params::CelmParams;
pub use regions::{Mask, Region};
