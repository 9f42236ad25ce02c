//! The grid of windows a heatmap scores: 96x96 windows every `stride` model-scale pixels.

use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};
use crate::network::model::GLIMPSE;
use crate::slide::tissue::TissueMask;

/// Default distance between window positions, in model-scale pixels: a third of a window, the
/// best slide FROC of the strides measured with the dense pass (docs/slides.md).
pub const DEFAULT_STRIDE: usize = 32;
/// Strides offered: from a quarter of the receptive field to plain tiling.
pub const STRIDES: std::ops::RangeInclusive<usize> = 16..=96;

/// Window positions over a model-scale image: top-left corners `(col * stride, row * stride)` of
/// the 96x96 windows that fit in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowGrid {
    pub stride: usize,
    pub cols: usize,
    pub rows: usize,
}

impl WindowGrid {
    /// The grid over a `width` x `height` model-scale image.
    pub fn new(width: usize, height: usize, stride: usize) -> Result<WindowGrid> {
        if !STRIDES.contains(&stride) {
            return Err(CelnetError::InvalidParameter(format!(
                "the stride must be {} to {} px at the model's scale, got {stride}",
                STRIDES.start(),
                STRIDES.end()
            )));
        }
        if width < GLIMPSE || height < GLIMPSE {
            return Err(CelnetError::ImageTooSmall {
                width: width as u32,
                height: height as u32,
                min: GLIMPSE as u32,
            });
        }
        Ok(WindowGrid {
            stride,
            cols: (width - GLIMPSE) / stride + 1,
            rows: (height - GLIMPSE) / stride + 1,
        })
    }

    /// The top-left corner of window `(col, row)`.
    pub fn origin(&self, col: usize, row: usize) -> (usize, usize) {
        (col * self.stride, row * self.stride)
    }

    /// Pixels that `windows` consecutive windows of a row or column cover.
    pub fn span(&self, windows: usize) -> usize {
        (windows - 1) * self.stride + GLIMPSE
    }

    /// The centre of window `(col, row)`.
    pub fn centre(&self, col: usize, row: usize) -> (usize, usize) {
        let (x, y) = self.origin(col, row);
        (x + GLIMPSE / 2, y + GLIMPSE / 2)
    }

    /// Whether window `(col, row)` is scored: its centre lies in tissue.
    pub fn in_tissue(&self, tissue: &TissueMask, col: usize, row: usize) -> bool {
        let (x, y) = self.centre(col, row);
        tissue.contains(x, y)
    }

    /// Index of window `(col, row)` in row-major order.
    pub fn index(&self, col: usize, row: usize) -> usize {
        row * self.cols + col
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_fits_whole_windows() {
        let grid = WindowGrid::new(200, 96, 48).unwrap();
        assert_eq!((grid.cols, grid.rows), (3, 1));
        assert_eq!(grid.origin(2, 0), (96, 0));
        assert_eq!(grid.centre(0, 0), (48, 48));
        assert!(WindowGrid::new(95, 200, 48).is_err());
        assert!(WindowGrid::new(200, 200, 8).is_err());
    }
}
