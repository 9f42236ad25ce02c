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
    /// An image (a map, an overlay, a mosaic) could not be written.
    #[error("cannot write the image {path}: {message}")]
    ImageWrite { path: String, message: String },
    /// A large image whose pixel size is neither in its file nor given.
    #[error("the image is {width}x{height} px and {}; give its pixel size with --mpp ({})", declared.map_or("its file gives no pixel size".to_string(), |mpp| format!("its file declares {mpp:.1} µm/px, which is no microscope's (a screen's or an editor's dpi)")), crate::slide::scale::MAGNIFICATION_HINT)]
    UnknownPixelSize {
        width: u32,
        height: u32,
        /// An implausible value the file declared, µm/px.
        declared: Option<f64>,
    },
    /// The weights file is not a CELNet weights file at all.
    #[error("cannot read the weights: {0}")]
    WeightsFormat(String),
    /// A readable weights file whose tensors do not fit this network.
    #[error("the weights do not fit CELNet: {0}")]
    WeightsMismatch(String),
    /// A training run's optimiser state cannot be read or written.
    #[error("optimiser state {path}: {message}")]
    OptimizerState { path: String, message: String },
    /// A training run's `state.json` cannot be read.
    #[error("run state {path}: {message}")]
    RunState { path: String, message: String },
    /// A parameter outside its documented range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The compute backend could not be used (no GPU adapter, lost device, failed read-back).
    #[error("backend error: {0}")]
    Backend(String),
    /// A dataset folder or file that cannot be used.
    #[error("dataset: {0}")]
    Dataset(String),
    /// A tumour mask whose size differs from its image's.
    #[error("{name}: the tumour mask is {}x{} px but the glimpse is {}x{} px", mask.0, mask.1, image.0, image.1)]
    MaskSize {
        name: String,
        mask: (usize, usize),
        image: (usize, usize),
    },
    /// A chart (training curves, ROC) could not be drawn or written.
    #[error("cannot draw the chart {path}: {message}")]
    Chart { path: String, message: String },
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
    /// Any of the above, about one file of several.
    #[error("{path}: {source}")]
    InFile {
        path: String,
        #[source]
        source: Box<CelnetError>,
    },
}

/// What kind of failure an error is, for callers that act on it (a workflow engine retries an
/// internal failure, never an unusable input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The input cannot be used as given: not an image, damaged, unsupported, too small or
    /// too large, no pixel size, weights that do not fit, a parameter out of range.
    BadInput,
    /// A file or folder that is not there.
    MissingInput,
    /// Reading or writing failed below the format: a full disk, an unwritable output.
    Io,
    /// The software or the machine failed: the compute backend, a training run's state.
    Internal,
}

impl CelnetError {
    /// The kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        match self {
            CelnetError::ImageDecode(_)
            | CelnetError::ImageTooSmall { .. }
            | CelnetError::ImageTooLarge { .. }
            | CelnetError::UnknownPixelSize { .. }
            | CelnetError::WeightsFormat(_)
            | CelnetError::WeightsMismatch(_)
            | CelnetError::InvalidParameter(_)
            | CelnetError::Dataset(_)
            | CelnetError::MaskSize { .. } => FailureKind::BadInput,
            CelnetError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => FailureKind::MissingInput,
                // A file that ends early is a damaged input, not a failing disk.
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => {
                    FailureKind::BadInput
                }
                _ => FailureKind::Io,
            },
            CelnetError::ImageWrite { .. } | CelnetError::Chart { .. } => FailureKind::Io,
            CelnetError::Backend(_)
            | CelnetError::OptimizerState { .. }
            | CelnetError::RunState { .. }
            | CelnetError::Serve(_) => FailureKind::Internal,
            CelnetError::InFile { source, .. } => source.kind(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        CelnetError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Names the file an error is about, unless the error already does.
pub trait FileContext<T> {
    fn in_file(self, path: impl AsRef<std::path::Path>) -> Result<T>;
}

impl<T> FileContext<T> for Result<T> {
    fn in_file(self, path: impl AsRef<std::path::Path>) -> Result<T> {
        self.map_err(|error| match error {
            CelnetError::Io { .. }
            | CelnetError::InFile { .. }
            | CelnetError::ImageWrite { .. }
            | CelnetError::Chart { .. }
            | CelnetError::RunState { .. }
            | CelnetError::OptimizerState { .. } => error,
            other => CelnetError::InFile {
                path: path.as_ref().display().to_string(),
                source: Box::new(other),
            },
        })
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CelnetError>;
