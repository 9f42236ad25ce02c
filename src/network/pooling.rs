//! Where attention and the companions pool: over a whole glimpse, or over each window of a
//! grid of glimpses scored in one dense pass.

use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};

use crate::error::{CelnetError, Result};
use crate::network::max_reduce::spatial_max;
use crate::network::window_attention::block_avg_max;

/// Side of the glimpses the model is trained on (PCam patches, about 1 µm/px).
pub const GLIMPSE: usize = 96;

/// A grid of glimpses covering an input: `rows` x `cols` windows of `size` px every `stride`
/// px, the first at the top-left corner, the last at the bottom-right one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseWindows {
    pub size: usize,
    pub stride: usize,
    pub rows: usize,
    pub cols: usize,
}

impl DenseWindows {
    /// The grid of `size`-px windows every `stride` px that covers a `height` x `width` input
    /// exactly, if there is one.
    pub fn covering(
        height: usize,
        width: usize,
        size: usize,
        stride: usize,
    ) -> Option<DenseWindows> {
        let fits = |side: usize| side >= size && (side - size).is_multiple_of(stride);
        (stride > 0 && fits(height) && fits(width)).then(|| DenseWindows {
            size,
            stride,
            rows: (height - size) / stride + 1,
            cols: (width - size) / stride + 1,
        })
    }

    /// The [`GLIMPSE`]-px windows every `stride` px that cover a `height` x `width` input, as
    /// the dense pass needs them: `stride` a multiple of 4 so that windows align with the pixels
    /// of F2 and F3, and the input exactly covered. Anything else is an error naming it.
    pub fn of_glimpses(height: usize, width: usize, stride: usize) -> Result<DenseWindows> {
        if stride == 0 || !stride.is_multiple_of(4) {
            return Err(CelnetError::InvalidParameter(format!(
                "dense scoring needs a stride divisible by 4 (the network halves the image \
                 twice), got {stride}"
            )));
        }
        Self::covering(height, width, GLIMPSE, stride).ok_or_else(|| {
            CelnetError::InvalidParameter(format!(
                "{GLIMPSE}-px windows every {stride} px do not cover a {width}x{height} input"
            ))
        })
    }

    /// Side of the blocks the input is cut into: every block lies whole in the same windows.
    pub fn block(&self) -> usize {
        gcd(self.size, self.stride)
    }

    /// The same windows on a map `factor` times smaller.
    fn downscaled(self, factor: usize) -> DenseWindows {
        DenseWindows {
            size: self.size / factor,
            stride: self.stride / factor,
            ..self
        }
    }

    /// Channel weights per window `[B, C, rows, cols]` spread to the [`DenseWindows::block`]s of
    /// a `[height, width]` map at this grid's scale: `[B, C, height / block, width / block]`, each
    /// block taking the weights of the window whose centre is nearest.
    pub(crate) fn block_weights(
        &self,
        weights: Tensor<4>,
        [height, width]: [usize; 2],
    ) -> Tensor<4> {
        let block = self.block();
        let device = weights.device();
        let nearest = |blocks: usize, windows: usize| {
            let indices: Vec<i32> = (0..blocks)
                .map(|b| {
                    let offset = (b as f64 + 0.5) * block as f64 - (self.size / 2) as f64;
                    (offset / self.stride as f64)
                        .round()
                        .clamp(0.0, (windows - 1) as f64) as i32
                })
                .collect();
            Tensor::<1, Int>::from_ints(indices.as_slice(), &device)
        };
        weights
            .select(2, nearest(height / block, self.rows))
            .select(3, nearest(width / block, self.cols))
    }
}

/// Where channel attention and the companions take their per-channel statistics from.
///
/// CELNet pools globally, so a glimpse's score depends on the whole glimpse. Scoring a grid of
/// glimpses in one pass over a larger image keeps that meaning by pooling over each glimpse's
/// footprint instead of over the whole image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Over the whole map: the input is one glimpse.
    Global,
    /// Over each window of a grid. A block shared by several windows is reweighted by the
    /// channel attention of the window whose centre is nearest (the dense pass's approximation;
    /// exact for a single window).
    Windows(DenseWindows),
}

impl Pooling {
    /// The same pooling on a map `factor` times smaller.
    pub(crate) fn downscaled(self, factor: usize) -> Pooling {
        match self {
            Pooling::Global => Pooling::Global,
            Pooling::Windows(grid) => Pooling::Windows(grid.downscaled(factor)),
        }
    }

    /// Average and maximum per channel: `[B, C, 1, 1]` globally, `[B, C, rows, cols]` per window.
    pub(crate) fn avg_max(self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let Pooling::Windows(grid) = self else {
            return (x.clone().mean_dims(&[2, 3]), spatial_max(x));
        };
        // Block statistics first (each pixel read once), then windows of whole blocks: the same
        // averages and maxima as pooling the pixels of each window, at a fraction of the reads.
        let block = grid.block();
        let (avg, max) = if block > 1 {
            block_avg_max(x, block)
        } else {
            (x.clone(), x)
        };
        let (kernel, step) = ([grid.size / block; 2], [grid.stride / block; 2]);
        (
            avg_pool2d(avg, AvgPoolOptions::new(kernel).with_stride(step)),
            max_pool2d(max, MaxPoolOptions::new(kernel).with_stride(step)),
        )
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Three rows and two columns of 24-px windows every 8 px: a 40 x 32 map of 8-px blocks.
    const GRID: DenseWindows = DenseWindows {
        size: 24,
        stride: 8,
        rows: 3,
        cols: 2,
    };

    #[test]
    fn window_pooling_pools_each_window() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 2, 40, 32], Distribution::Default, &device);
        let (avg, max) = Pooling::Windows(GRID).avg_max(x.clone());
        assert_eq!(avg.dims(), [1, 2, 3, 2]);
        let (avg, max) = (values(avg), values(max));
        for channel in 0..2 {
            for row in 0..3 {
                for col in 0..2 {
                    let (y, x0) = (row * 8, col * 8);
                    let window =
                        x.clone()
                            .slice([0..1, channel..channel + 1, y..y + 24, x0..x0 + 24]);
                    let i = channel * 6 + row * 2 + col;
                    let expected_avg = values(window.clone().mean_dims(&[2, 3]))[0];
                    let expected_max = values(window.max_dims(&[2, 3]))[0];
                    assert!((avg[i] - expected_avg).abs() < 1e-6, "{row},{col}");
                    assert_eq!(max[i], expected_max, "{row},{col}");
                }
            }
        }
    }

    #[test]
    fn shared_blocks_take_the_weights_of_the_nearest_window() {
        let device = Device::flex();
        let weights: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let weights = Tensor::<4>::from_data(TensorData::new(weights, [1, 1, 3, 2]), &device);
        // One weight per 8-px block of a 40 x 32 map.
        let out = values(GRID.block_weights(weights, [40, 32]));
        // Naively: the window whose centre is closest to the centre of the pixel's block.
        let nearest = |pixel: usize, windows: usize| {
            let centre = (pixel / 8 * 8 + 4) as f64;
            (0..windows)
                .min_by(|&a, &b| {
                    let d = |w: usize| (centre - (w * 8 + 12) as f64).abs();
                    d(a).total_cmp(&d(b))
                })
                .unwrap()
        };
        for y in 0..40 {
            for x in 0..32 {
                let expected = (nearest(y, 3) * 2 + nearest(x, 2)) as f32;
                assert_eq!(out[y / 8 * 4 + x / 8], expected, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn only_grids_that_cover_the_input_exactly_are_made() {
        assert_eq!(DenseWindows::covering(40, 32, 24, 8), Some(GRID));
        assert_eq!(DenseWindows::covering(41, 32, 24, 8), None);
        assert_eq!(DenseWindows::covering(16, 32, 24, 8), None);
        assert_eq!(DenseWindows::covering(40, 32, 24, 0), None);
    }

    #[test]
    fn strides_the_network_cannot_align_are_errors() {
        assert!(DenseWindows::of_glimpses(160, 160, 32).is_ok());
        for (side, stride) in [(156, 30), (160, 0), (170, 32)] {
            let message = DenseWindows::of_glimpses(side, side, stride)
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("stride") || message.contains("cover"),
                "{message}"
            );
        }
    }
}
