//! Where the time of one result went: the one timing schema of the CLI's and the page's JSON.

use serde::Serialize;

/// Milliseconds spent on one image, serialised as `timings_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Loading the weights onto the device (the CLI loads them once per run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_load: Option<f64>,
    /// Reading and decoding the image.
    pub decode: f64,
    /// The network: a forward pass for a score, both gradient passes for an explanation.
    pub network: f64,
    /// Turning the evidence into maps, mask and regions (explanations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fusion: Option<f64>,
    pub total: f64,
}
