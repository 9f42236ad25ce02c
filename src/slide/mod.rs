//! Images larger than a glimpse, from a field of view to a whole slide: the paper's slide
//! pipeline (heatmap, slide score, tumour points) with CELM of chosen windows.
//!
//! Layers, each using only those below it:
//! - [`file`]: opening an input (TIFF pyramids read tile by tile, other images decoded) and the
//!   pixel size its file declares;
//! - [`scale`]: the pixel size an image is scored at and how model pixels map onto the input's;
//! - [`image`], [`resample`]: images at the model's scale, read region by region, and resizing;
//! - [`tissue`], [`grid`], [`scan`]: where the tissue is, the windows, and scoring them (dense
//!   tiles in any order, or exact);
//! - [`heatmap`], [`evidence`]: slide scores and tumour points; CELM of chosen windows;
//! - [`lesions`], [`probability`]: lesions measured in millimetres, and the slide probability
//!   and category;
//! - [`analysis`], [`export`]: the one pipeline the command line and the page run, and what it
//!   is written as.

pub mod analysis;
pub mod evidence;
pub mod export;
pub mod file;
pub mod grid;
pub mod heatmap;
pub mod image;
pub mod lesions;
pub mod probability;
pub mod resample;
pub mod scale;
pub mod scan;
pub mod tiling;
pub mod tissue;

pub use analysis::{Analysis, CellLayout, DEFAULT_TOP_K, Plan, TissuePlan, WindowBounds};
pub use evidence::{EvidenceReason, ExplainedWindow, WindowEvidence};
pub use export::{HeatmapReport, Scoring};
pub use file::OpenedImage;
pub use file::resolution::FileResolution;
pub use file::tiff::{Level, TiffSlide};
pub use grid::{DEFAULT_STRIDE, STRIDES, WindowGrid};
pub use heatmap::{Heatmap, Point, SlideScores};
pub use image::{ModelScaleImage, ScaledInput};
pub use lesions::{Category, Hysteresis, Lesion, find_lesions};
pub use probability::{SlideFeatures, SlideModel};
pub use scale::{ModelScale, MppSource, PixelSize};
pub use scan::{DenseTile, Mode, Progress, Scan, ScanConfig, Survey};
pub use tissue::TissueMask;
