//! Faithfulness of an evidence map: the deletion curve.
//!
//! Pixels are removed most-evident first and the network's probability is recorded after each
//! step. A map that points at what the network uses makes the probability fall early: a lower
//! area under the curve is better. A random map gives the baseline.
//!
//! What "removed" means matters. Removed pixels become white by default, like bare glass
//! (an all-white glimpse scores 0.05 with the shipped weights). A blurred copy of the glimpse,
//! the usual choice for natural images, is read as tumour by this network: fully blurred copies of
//! the test mosaics it calls positive scored 0.94 on average, and a flat glimpse of the training set's mean colour scores
//! 1.0, so deleting "evidence" that way *raised* the probability for every map.

use burn::prelude::*;
use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};
use crate::explain::{CelmParams, Explainer, Map, PreparedEvidence};
use crate::input::normalise;
use crate::network::classifier::{Classifier, Label, sigmoid};
use crate::studies::localize::Method;

/// What a deleted pixel becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Fill {
    /// White, like glass without tissue.
    White,
    /// The pixel of a Gaussian-blurred copy of the glimpse.
    Blur,
}

/// Deletion-curve settings.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DeletionOptions {
    /// Number of deletion steps; the curve has `steps + 1` points from 0% to 100% deleted.
    pub steps: usize,
    pub fill: Fill,
    /// Gaussian sigma (px) of the blurred copy for [`Fill::Blur`].
    pub blur_sigma: f32,
}

impl Default for DeletionOptions {
    fn default() -> Self {
        Self {
            steps: 16,
            fill: Fill::White,
            blur_sigma: 8.0,
        }
    }
}

impl DeletionOptions {
    /// The image deleted pixels are taken from.
    pub fn replacement(&self, image: &RgbImage) -> RgbImage {
        match self.fill {
            Fill::White => {
                RgbImage::from_pixel(image.width(), image.height(), image::Rgb([255; 3]))
            }
            Fill::Blur => image::imageops::blur(image, self.blur_sigma),
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
/// replaced by the matching pixels of `replacement`.
pub fn deletion_images(
    image: &RgbImage,
    replacement: &RgbImage,
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
            current.put_pixel(x, y, *replacement.get_pixel(x, y));
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
    classifier: &Classifier,
    image: &RgbImage,
    map: &Map,
    options: &DeletionOptions,
    seed: u64,
) -> Result<Vec<f32>> {
    let order = deletion_order(map, seed);
    let replacement = options.replacement(image);
    let images = deletion_images(image, &replacement, &order, options.steps.max(1));
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut values = Vec::with_capacity(images.len() * 3 * w * h);
    for img in &images {
        values.extend(normalise(img));
    }
    let batch = Tensor::<4>::from_data(
        TensorData::new(values, [images.len(), 3, h, w]),
        classifier.device(),
    );
    let logits = classifier.logits(batch).await?;
    Ok(logits.into_iter().map(sigmoid).collect())
}

/// The name of the random baseline in reports.
pub const RANDOM_BASELINE: &str = "random";

/// Deletion curves of every localisation method's map and of a random map, gathered over the
/// glimpses the network calls positive.
pub struct DeletionStudy {
    options: DeletionOptions,
    params: CelmParams,
    seed: u64,
    examined: usize,
    /// Per map (the methods in [`Method::ALL`] order, then the random baseline): one curve per
    /// positive glimpse.
    curves: Vec<Vec<Vec<f32>>>,
}

impl DeletionStudy {
    /// A study of the maps fused with `params`; `seed` drives the random map and tie-breaking.
    pub fn new(options: DeletionOptions, params: CelmParams, seed: u64) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            options,
            params,
            seed,
            examined: 0,
            curves: vec![Vec::new(); Method::ALL.len() + 1],
        })
    }

    /// Glimpses called positive so far.
    pub fn positives(&self) -> usize {
        self.curves[0].len()
    }

    /// Adds one glimpse; returns whether it counted (the network calls it positive).
    pub async fn add(&mut self, explainer: &Explainer, image: &RgbImage) -> Result<bool> {
        let seed = self.seed + self.examined as u64;
        self.examined += 1;
        let evidence =
            PreparedEvidence::new(explainer.evidence(image).await?, &[self.params.sigma]);
        if evidence.prediction.label != Label::Metastasis {
            return Ok(false);
        }
        let classifier = explainer.classifier();
        let random = random_map(image.width() as usize, image.height() as usize, seed);
        for (i, method) in Method::ALL.iter().enumerate() {
            let map = evidence.map(method.map_kind(), &self.params);
            let curve = deletion_curve(&classifier, image, &map, &self.options, seed).await?;
            self.curves[i].push(curve);
        }
        let curve = deletion_curve(&classifier, image, &random, &self.options, seed).await?;
        self.curves[Method::ALL.len()].push(curve);
        Ok(true)
    }

    /// The mean deletion AUC and curve of each map.
    pub fn report(&self) -> Result<FaithfulnessReport> {
        if self.positives() == 0 {
            return Err(CelnetError::Dataset(format!(
                "none of the {} glimpses is predicted positive; deletion curves need positive calls",
                self.examined
            )));
        }
        let names = Method::ALL
            .iter()
            .map(|m| m.name())
            .chain([RANDOM_BASELINE]);
        let mean = |xs: &mut dyn Iterator<Item = f64>| {
            let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
            sum / n as f64
        };
        let methods = names
            .zip(&self.curves)
            .map(|(name, curves)| MethodCurve {
                method: name.to_string(),
                auc: mean(&mut curves.iter().map(|c| curve_area(c))),
                relative_auc: mean(
                    &mut curves
                        .iter()
                        .map(|c| curve_area(c) / f64::from(c[0]).max(1e-6)),
                ),
                mean_curve: (0..=self.options.steps.max(1))
                    .map(|k| mean(&mut curves.iter().map(|c| f64::from(c[k]))))
                    .collect(),
            })
            .collect();
        Ok(FaithfulnessReport {
            n: self.positives(),
            glimpses: self.examined,
            steps: self.options.steps,
            fill: self.options.fill,
            blur_sigma: self.options.blur_sigma,
            params: self.params,
            methods,
        })
    }
}

/// One map's deletion results, averaged over the positive glimpses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MethodCurve {
    /// A [`Method`] name, or [`RANDOM_BASELINE`].
    pub method: String,
    /// Mean area under the deletion curve (lower = more faithful).
    pub auc: f64,
    /// Mean area divided by each glimpse's untouched probability.
    pub relative_auc: f64,
    /// The mean probability after each step, `steps + 1` points.
    pub mean_curve: Vec<f64>,
}

/// The result of a [`DeletionStudy`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaithfulnessReport {
    /// Positive glimpses the curves average over.
    pub n: usize,
    /// Glimpses examined (positive or not).
    pub glimpses: usize,
    pub steps: usize,
    pub fill: Fill,
    pub blur_sigma: f32,
    pub params: CelmParams,
    pub methods: Vec<MethodCurve>,
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
        let replacement = RgbImage::from_pixel(4, 1, image::Rgb([9, 9, 9]));
        let images = deletion_images(&image, &replacement, &[2, 0, 3, 1], 2);
        assert_eq!(images.len(), 3);
        let deleted = |img: &RgbImage| -> Vec<bool> { img.pixels().map(|p| p.0[0] == 9).collect() };
        assert_eq!(deleted(&images[0]), [false; 4]);
        assert_eq!(deleted(&images[1]), [true, false, true, false]);
        assert_eq!(deleted(&images[2]), [true; 4]);
    }

    #[test]
    fn fills_are_white_or_a_blurred_copy() {
        let image = RgbImage::from_fn(8, 8, |x, _| image::Rgb([if x < 4 { 0 } else { 200 }; 3]));
        let white = DeletionOptions::default().replacement(&image);
        assert!(white.pixels().all(|p| p.0 == [255; 3]));
        let blur = DeletionOptions {
            fill: Fill::Blur,
            ..DeletionOptions::default()
        }
        .replacement(&image);
        assert_eq!(blur.dimensions(), (8, 8));
        // The edge between the halves is smoothed away.
        let (left, right) = (blur.get_pixel(3, 4).0[0], blur.get_pixel(4, 4).0[0]);
        assert!(left > 0 && right < 200, "{left} {right}");
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
