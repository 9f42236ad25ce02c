//! Single-channel float maps and the small image operations CELM needs on them: bilinear
//! upsampling, scaling to [0, 1], luma and Gaussian smoothing.
//!
//! These run on the CPU after the gradient passes, so re-fusing with other parameters never
//! touches the network again.

use serde::{Deserialize, Serialize};

/// A row-major single-channel map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Map {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Map {
    /// A map from row-major values. Panics if the length is not `width * height`: that is a bug
    /// in the caller, not bad input.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            width * height,
            "map data does not match its size"
        );
        Self {
            width,
            height,
            data,
        }
    }

    /// A map of zeros.
    pub fn zeros(width: usize, height: usize) -> Self {
        Self::new(width, height, vec![0.0; width * height])
    }

    /// The value at column `x`, row `y`.
    pub fn get(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }

    /// Element-wise combination of two maps of the same size.
    pub fn zip_with(&self, other: &Map, f: impl Fn(f32, f32) -> f32) -> Map {
        assert_eq!((self.width, self.height), (other.width, other.height));
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| f(a, b))
            .collect();
        Map::new(self.width, self.height, data)
    }

    /// Linearly rescaled to span [0, 1] (see [`scaled_to_unit`]).
    pub fn scaled_to_unit(&self) -> Map {
        Map::new(self.width, self.height, scaled_to_unit(&self.data))
    }

    /// Bilinear resampling to `width x height` with half-pixel centres (the convention of
    /// PyTorch's `interpolate(..., align_corners=False)`), edges clamped.
    pub fn resized_bilinear(&self, width: usize, height: usize) -> Map {
        let sx = self.width as f32 / width as f32;
        let sy = self.height as f32 / height as f32;
        let source = |dst: usize, scale: f32, len: usize| {
            let s = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(len - 1);
            let i1 = (i0 + 1).min(len - 1);
            (i0, i1, s - i0 as f32)
        };
        let columns: Vec<_> = (0..width).map(|x| source(x, sx, self.width)).collect();
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            let (y0, y1, fy) = source(y, sy, self.height);
            for &(x0, x1, fx) in &columns {
                let top = self.get(x0, y0) * (1.0 - fx) + self.get(x1, y0) * fx;
                let bottom = self.get(x0, y1) * (1.0 - fx) + self.get(x1, y1) * fx;
                data.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        Map::new(width, height, data)
    }

    /// Separable Gaussian smoothing with standard deviation `sigma` pixels (kernel radius
    /// `ceil(3 sigma)`), borders replicated. `sigma <= 0` returns the map unchanged.
    pub fn gaussian_blurred(&self, sigma: f32) -> Map {
        if sigma <= 0.0 || !sigma.is_finite() {
            return self.clone();
        }
        let kernel = gaussian_kernel(sigma);
        let radius = (kernel.len() / 2) as isize;
        let (w, h) = (self.width as isize, self.height as isize);
        let convolve = |get: &dyn Fn(isize) -> f32| -> f32 {
            kernel
                .iter()
                .enumerate()
                .map(|(k, weight)| weight * get(k as isize - radius))
                .sum()
        };
        let mut rows = vec![0.0f32; self.data.len()];
        for y in 0..h {
            for x in 0..w {
                rows[(y * w + x) as usize] =
                    convolve(&|d| self.data[(y * w + (x + d).clamp(0, w - 1)) as usize]);
            }
        }
        let mut out = vec![0.0f32; self.data.len()];
        for y in 0..h {
            for x in 0..w {
                out[(y * w + x) as usize] =
                    convolve(&|d| rows[((y + d).clamp(0, h - 1) * w + x) as usize]);
            }
        }
        Map::new(self.width, self.height, out)
    }
}

/// Values linearly rescaled to span [0, 1]. Constant input (for instance a CAM that is zero
/// everywhere after its ReLU) becomes all zeros rather than NaN; non-finite values count as 0.
pub fn scaled_to_unit(values: &[f32]) -> Vec<f32> {
    let finite = |v: f32| if v.is_finite() { v } else { 0.0 };
    let (lo, hi) = values
        .iter()
        .map(|&v| finite(v))
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    if range > f32::EPSILON * hi.abs().max(1.0) {
        values.iter().map(|&v| (finite(v) - lo) / range).collect()
    } else {
        vec![0.0; values.len()]
    }
}

/// Normalised 1-D Gaussian weights, radius `ceil(3 sigma)`.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// ITU-R BT.601 luma weights, the usual RGB-to-grey conversion.
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Grey map of a channel-first 3-channel buffer: `sum_c LUMA[c] * channel_c`.
pub fn luma(chw: &[f32], width: usize, height: usize) -> Map {
    let plane = width * height;
    assert_eq!(chw.len(), 3 * plane);
    let data = (0..plane)
        .map(|i| (0..3).map(|c| LUMA[c] * chw[c * plane + i]).sum())
        .collect();
    Map::new(width, height, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_map_scales_to_zero_not_nan() {
        let m = Map::new(2, 2, vec![3.0; 4]).scaled_to_unit();
        assert_eq!(m.data, vec![0.0; 4]);
        let z = Map::zeros(3, 1).scaled_to_unit();
        assert_eq!(z.data, vec![0.0; 3]);
    }

    #[test]
    fn scaling_spans_unit_interval() {
        let m = Map::new(3, 1, vec![-1.0, 1.0, 3.0]).scaled_to_unit();
        assert_eq!(m.data, vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn bilinear_doubling_matches_hand_computation() {
        // 2x1 -> 4x1 with half-pixel centres: sources at -0.25, 0.25, 0.75, 1.25.
        let m = Map::new(2, 1, vec![0.0, 4.0]).resized_bilinear(4, 1);
        assert_eq!(m.data, vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn bilinear_same_size_is_identity() {
        let m = Map::new(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.resized_bilinear(3, 2), m);
    }

    #[test]
    fn gaussian_preserves_constant_and_mass() {
        let c = Map::new(5, 4, vec![2.0; 20]).gaussian_blurred(1.5);
        assert!(c.data.iter().all(|v| (v - 2.0).abs() < 1e-5));
        let mut impulse = Map::zeros(15, 15);
        impulse.data[7 * 15 + 7] = 1.0;
        let blurred = impulse.gaussian_blurred(1.0);
        let total: f32 = blurred.data.iter().sum();
        assert!((total - 1.0).abs() < 1e-5);
        // Symmetric and peaked at the centre.
        assert_eq!(blurred.get(6, 7), blurred.get(8, 7));
        assert_eq!(blurred.get(7, 6), blurred.get(7, 8));
        assert!(blurred.get(7, 7) > blurred.get(6, 7));
    }

    #[test]
    fn luma_of_white_is_one() {
        let m = luma(&[1.0; 12], 2, 2);
        assert!(m.data.iter().all(|v| (v - 1.0).abs() < 1e-6));
    }
}
