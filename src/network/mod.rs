//! The network and its kernels: CELNet ([`model`]) and its pooling over glimpses or windows
//! ([`pooling`]) and where its dense pass computes ([`active_area`]), the plain classifier ([`classifier`]), and the operations written as Burn
//! backend extensions for speed on the CPU paths (3x3 and same-padded convolutions, attention's
//! maxima, guided backprop's ReLU, the dense pass's attention), with the forward pass's profile by kind of operation.

pub mod active_area;
pub mod classifier;
pub mod conv;
pub mod guided;
pub mod max_reduce;
pub mod model;
pub mod pooling;
pub mod profile;
pub mod window_attention;

pub use classifier::{Classifier, DECISION_THRESHOLD, Label, Prediction, Tta};
pub use model::{Celnet, CelnetConfig, GLIMPSE};
