//! The crate's error type: every failure a user can cause is one of these, never a panic.

use thiserror::Error;

/// Errors returned by the public API.
#[derive(Debug, Error)]
pub enum CelnetError {
    /// The bytes are not an image in a supported format, or the file is damaged.
    #[error("cannot read the image: {0}")]
    ImageDecode(String),
    /// Smaller than the network's receptive field needs.
    #[error("the image is {width}x{height} px; CELNet needs at least {min}x{min} px")]
    ImageTooSmall { width: u32, height: u32, min: u32 },
    /// Refused before any pixel buffer is allocated.
    #[error("the image is {width}x{height} px; the limit is {max_pixels} pixels ({what})")]
    ImageTooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
        what: &'static str,
    },
    /// The weights file is not a CELNet weights file at all.
    #[error("cannot read the weights: {0}")]
    WeightsFormat(String),
    /// A readable weights file whose tensors do not fit this network.
    #[error("the weights do not fit CELNet: {0}")]
    WeightsMismatch(String),
    /// A parameter outside its documented range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The compute backend could not be used (no GPU adapter, lost device, failed read-back).
    #[error("backend error: {0}")]
    Backend(String),
    /// A dataset folder or file that cannot be used.
    #[error("dataset: {0}")]
    Dataset(String),
    /// `celnet serve` cannot start (port taken, page not built).
    #[error("serve: {0}")]
    Serve(String),
    /// File-system errors, with the path involved.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CelnetError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        CelnetError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CelnetError>;
