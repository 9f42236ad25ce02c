//! Where the tissue is: HSV saturation of a low-resolution copy above an Otsu threshold. Glass,
//! white background and grey pen-free blanks have almost no saturation; H&E-stained tissue has.

use image::RgbImage;

use crate::slide::resample::{Filter, resize};

/// Side, in model-scale pixels, of one cell of the tissue mask.
pub const TISSUE_CELL: u32 = 8;
/// Saturation thresholds tissue detection may use: Otsu's threshold, held in this range so that
/// an image of tissue only (one mode) is not split in two and faint eosin is not lost.
pub const TISSUE_THRESHOLD: std::ops::RangeInclusive<f32> = 0.05..=0.15;

/// Where the tissue is: HSV saturation of a low-resolution copy above an Otsu threshold. Glass,
/// white background and grey pen-free blanks have almost no saturation; H&E-stained tissue has.
#[derive(Clone, Debug)]
pub struct TissueMask {
    /// Cells across and down; a cell covers [`TISSUE_CELL`] x [`TISSUE_CELL`] model-scale px.
    pub cols: usize,
    pub rows: usize,
    pub data: Vec<bool>,
    /// The saturation threshold used.
    pub threshold: f32,
}

impl TissueMask {
    /// The mask of a model-scale image.
    pub fn of(image: &RgbImage) -> TissueMask {
        Self::from_thumbnail(image, image.width() as usize, image.height() as usize)
    }

    /// The mask of a `width` x `height` model-scale image from a copy of it at any size at
    /// least one pixel per cell.
    pub fn from_thumbnail(thumbnail: &RgbImage, width: usize, height: usize) -> TissueMask {
        let cols = (width as u32).div_ceil(TISSUE_CELL).max(1);
        let rows = (height as u32).div_ceil(TISSUE_CELL).max(1);
        let small = resize(thumbnail, cols, rows, Filter::Triangle);
        let saturation: Vec<f32> = small
            .pixels()
            .map(|p| {
                let max = f32::from(*p.0.iter().max().expect("three channels"));
                let min = f32::from(*p.0.iter().min().expect("three channels"));
                if max == 0.0 { 0.0 } else { (max - min) / max }
            })
            .collect();
        let threshold = otsu(&saturation).clamp(*TISSUE_THRESHOLD.start(), *TISSUE_THRESHOLD.end());
        TissueMask {
            cols: cols as usize,
            rows: rows as usize,
            data: saturation.iter().map(|&s| s >= threshold).collect(),
            threshold,
        }
    }

    /// Whether the model-scale pixel `(x, y)` lies in tissue.
    pub fn contains(&self, x: usize, y: usize) -> bool {
        let (c, r) = (x / TISSUE_CELL as usize, y / TISSUE_CELL as usize);
        c < self.cols && r < self.rows && self.data[r * self.cols + c]
    }

    /// Share of the image that is tissue.
    pub fn fraction(&self) -> f64 {
        self.data.iter().filter(|&&t| t).count() as f64 / self.data.len().max(1) as f64
    }
}

/// Otsu's threshold of values in [0, 1] (256 bins): the split with the largest between-class
/// variance.
pub fn otsu(values: &[f32]) -> f32 {
    let mut histogram = [0u64; 256];
    for &v in values {
        histogram[(v.clamp(0.0, 1.0) * 255.0).round() as usize] += 1;
    }
    let total = values.len() as f64;
    let sum: f64 = histogram
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut weight_low, mut sum_low) = (0.0, 0.0);
    let (mut best, mut best_variance) = (0usize, -1.0);
    for (i, &n) in histogram.iter().enumerate() {
        weight_low += n as f64;
        sum_low += i as f64 * n as f64;
        let weight_high = total - weight_low;
        if weight_low == 0.0 || weight_high == 0.0 {
            continue;
        }
        let mean_low = sum_low / weight_low;
        let mean_high = (sum - sum_low) / weight_high;
        let variance = weight_low * weight_high * (mean_low - mean_high).powi(2);
        if variance > best_variance {
            best_variance = variance;
            best = i;
        }
    }
    // Values at or above the boundary between bin `best` and the next are "high".
    (best as f32 + 0.5) / 255.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_splits_two_modes() {
        let mut values = vec![0.02f32; 600];
        values.extend(vec![0.6f32; 400]);
        let t = otsu(&values);
        assert!(t > 0.02 && t <= 0.6, "{t}");
    }

    #[test]
    fn glass_is_not_tissue_and_stain_is() {
        // Left half white glass, right half H&E pink-purple.
        let image = RgbImage::from_fn(192, 96, |x, _| {
            image::Rgb(if x < 96 {
                [243, 243, 241]
            } else {
                [180, 90, 170]
            })
        });
        let tissue = TissueMask::of(&image);
        assert!(!tissue.contains(40, 40));
        assert!(tissue.contains(150, 40));
        assert!(
            (tissue.fraction() - 0.5).abs() < 0.1,
            "{}",
            tissue.fraction()
        );
        // Tissue only: the threshold stays low enough to keep it all.
        let stained = RgbImage::from_fn(96, 96, |x, y| {
            image::Rgb([170 + (x % 7) as u8, 80 + (y % 11) as u8, 160])
        });
        assert_eq!(TissueMask::of(&stained).fraction(), 1.0);
    }
}
