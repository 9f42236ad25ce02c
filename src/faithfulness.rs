//! Faithfulness of an evidence map: the deletion curve.
//!
//! Pixels are removed most-evident first (replaced by a heavily blurred copy of the glimpse, so
//! no sharp artificial edges appear) and the network's probability is recorded after each
//! step. A map that points at what the network uses makes the probability fall early: a lower
//! area under the curve is better. A random map gives the baseline.

use burn::prelude::*;
use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::explain::{Engine, sigmoid};
use crate::input::normalise;
use crate::maps::Map;

/// Deletion-curve settings.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DeletionOptions {
    /// Number of deletion steps; the curve has `steps + 1` points from 0% to 100% deleted.
    pub steps: usize,
    /// Gaussian sigma (px) of the blurred copy that replaces deleted pixels.
    pub blur_sigma: f32,
}

impl Default for DeletionOptions {
    fn default() -> Self {
        Self {
            steps: 16,
            blur_sigma: 8.0,
        }
    }
}

/// Pixel indices from the most to the least evident. Ties (CAMs are zero over large areas)
/// are broken in a seeded random order rather than in raster order, which would delete the
/// top rows first.
pub fn deletion_order(map: &Map, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..map.data.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    order.sort_by(|&a, &b| map.data[b].total_cmp(&map.data[a]));
    order
}

/// The `steps + 1` images of a deletion curve: image `k` has the first `k / steps` of `order`
/// replaced by the matching pixels of `blurred`.
pub fn deletion_images(
    image: &RgbImage,
    blurred: &RgbImage,
    order: &[usize],
    steps: usize,
) -> Vec<RgbImage> {
    let n = order.len();
    let width = image.width() as usize;
    let mut current = image.clone();
    let mut done = 0;
    let mut images = Vec::with_capacity(steps + 1);
    images.push(current.clone());
    for k in 1..=steps {
        let upto = (n * k).div_ceil(steps);
        for &i in &order[done..upto] {
            let (x, y) = ((i % width) as u32, (i / width) as u32);
            current.put_pixel(x, y, *blurred.get_pixel(x, y));
        }
        done = upto;
        images.push(current.clone());
    }
    images
}

/// Area under a curve sampled at evenly spaced points over [0, 1] (trapezoid rule).
pub fn curve_area(values: &[f32]) -> f64 {
    match values.len() {
        0 => 0.0,
        1 => f64::from(values[0]),
        n => {
            let inner: f64 = values
                .windows(2)
                .map(|w| f64::from(w[0] + w[1]) / 2.0)
                .sum();
            inner / (n - 1) as f64
        }
    }
}

/// A map of uniform random values (the baseline "explanation").
pub fn random_map(width: usize, height: usize, seed: u64) -> Map {
    use rand::RngExt;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Map::new(
        width,
        height,
        (0..width * height).map(|_| rng.random::<f32>()).collect(),
    )
}

/// Probabilities of the network along the deletion curve of `map` on `image`.
pub async fn deletion_curve(
    engine: &Engine,
    image: &RgbImage,
    map: &Map,
    options: &DeletionOptions,
    seed: u64,
) -> Result<Vec<f32>> {
    let blurred = image::imageops::blur(image, options.blur_sigma);
    let order = deletion_order(map, seed);
    let images = deletion_images(image, &blurred, &order, options.steps.max(1));
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut values = Vec::with_capacity(images.len() * 3 * w * h);
    for img in &images {
        values.extend(normalise(img));
    }
    let batch = Tensor::<4>::from_data(
        TensorData::new(values, [images.len(), 3, h, w]),
        engine.device(),
    );
    let logits = engine.predict_batch(batch).await?;
    Ok(logits.into_iter().map(sigmoid).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_puts_high_values_first_and_is_a_permutation() {
        let map = Map::new(3, 2, vec![0.1, 0.9, 0.0, 0.5, 0.0, 0.0]);
        let order = deletion_order(&map, 7);
        assert_eq!(&order[..3], &[1, 3, 0]);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>());
        // Same seed, same tie order.
        assert_eq!(order, deletion_order(&map, 7));
    }

    #[test]
    fn deletion_replaces_pixels_step_by_step() {
        let image = RgbImage::from_pixel(4, 1, image::Rgb([0, 0, 0]));
        let blurred = RgbImage::from_pixel(4, 1, image::Rgb([9, 9, 9]));
        let images = deletion_images(&image, &blurred, &[2, 0, 3, 1], 2);
        assert_eq!(images.len(), 3);
        let deleted = |img: &RgbImage| -> Vec<bool> { img.pixels().map(|p| p.0[0] == 9).collect() };
        assert_eq!(deleted(&images[0]), [false; 4]);
        assert_eq!(deleted(&images[1]), [true, false, true, false]);
        assert_eq!(deleted(&images[2]), [true; 4]);
    }

    #[test]
    fn curve_area_by_hand() {
        assert_eq!(curve_area(&[1.0, 1.0, 1.0]), 1.0);
        assert_eq!(curve_area(&[1.0, 0.0]), 0.5);
        // (1 + 0.5) / 2 * 0.5 + (0.5 + 0) / 2 * 0.5
        assert!((curve_area(&[1.0, 0.5, 0.0]) - 0.5).abs() < 1e-12);
        assert!((curve_area(&[1.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    }
}
