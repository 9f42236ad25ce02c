//! The plain classifier: CELNet's probability of metastasis for glimpses, with no gradients.
//!
//! Used wherever only the score is needed (predict, evaluation, training validation, deletion
//! curves, the page's score). The decision rule and its labels live here and nowhere else.

use burn::prelude::*;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};
use crate::input::{MAX_DECODE_PIXELS, batch_tensor_data, check_size, to_tensor_data};
use crate::network::active_area::{ActiveArea, KeptWindows};
use crate::network::model::Celnet;
use crate::network::pooling::DenseWindows;
use crate::network::profile::{Profile, profiled};

/// Probability at or above which a glimpse is called metastatic.
pub const DECISION_THRESHOLD: f32 = 0.5;

/// The call made from a probability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Metastasis,
    Normal,
}

impl Label {
    /// The label of `probability` under [`DECISION_THRESHOLD`].
    pub fn of(probability: f32) -> Label {
        if probability >= DECISION_THRESHOLD {
            Label::Metastasis
        } else {
            Label::Normal
        }
    }

    /// The name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Label::Metastasis => "metastasis",
            Label::Normal => "normal",
        }
    }

    /// A short sentence for people reading a result.
    pub fn verdict(self) -> &'static str {
        match self {
            Label::Metastasis => "metastasis likely",
            Label::Normal => "no metastasis detected",
        }
    }
}

/// CELNet's score for one glimpse.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Cancer score before the sigmoid.
    pub logit: f32,
    pub probability: f32,
    pub label: Label,
}

impl Prediction {
    pub fn from_logit(logit: f32) -> Self {
        let probability = sigmoid(logit);
        Self {
            logit,
            probability,
            label: Label::of(probability),
        }
    }
}

/// Numerically stable logistic function.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Test-time augmentation: which orientations of an image are scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tta {
    /// The image as it is.
    #[default]
    Off,
    /// The eight orientations of the image (four quarter turns, each also mirrored), logits
    /// averaged: tissue has no up or left, so a score should not depend on them. Eight times
    /// the work.
    Dihedral,
}

/// One of the eight orientations: transposed or not, then mirrored left-right and/or upside
/// down. Each is its own inverse, applied in the reverse order.
#[derive(Clone, Copy, Debug)]
struct Orientation {
    transpose: bool,
    flip_rows: bool,
    flip_cols: bool,
}

impl Tta {
    /// [`Tta::Dihedral`] when `on`, else [`Tta::Off`] (a command-line flag, a page's toggle).
    pub fn when(on: bool) -> Tta {
        if on { Tta::Dihedral } else { Tta::Off }
    }

    /// The mean of `score` over this augmentation's orientations (without augmentation, the
    /// one score as it is, no extra operation).
    fn mean<const D: usize>(self, score: impl Fn(Orientation) -> Tensor<D>) -> Tensor<D> {
        let count = match self {
            Tta::Off => 1,
            Tta::Dihedral => 8,
        };
        let orientation = |i: u8| Orientation {
            transpose: i & 4 != 0,
            flip_rows: i & 2 != 0,
            flip_cols: i & 1 != 0,
        };
        let sum = (1..count).fold(score(orientation(0)), |sum, i| sum + score(orientation(i)));
        if count > 1 {
            sum / f32::from(count)
        } else {
            sum
        }
    }
}

impl Orientation {
    /// `x` `[..., H, W]` in this orientation.
    fn apply<const D: usize>(self, mut x: Tensor<D>) -> Tensor<D> {
        if self.transpose {
            x = x.swap_dims(D - 2, D - 1);
        }
        self.flip(x)
    }

    /// A map computed in this orientation back in the original one.
    fn undo<const D: usize>(self, mut x: Tensor<D>) -> Tensor<D> {
        x = self.flip(x);
        if self.transpose {
            x = x.swap_dims(D - 2, D - 1);
        }
        x
    }

    /// A `rows` x `cols` grid of values (row-major) over an image, as it lies over the image
    /// in this orientation (the grids of a dense pass map onto themselves).
    fn apply_grid<T: Copy>(self, values: &[T], rows: usize, cols: usize) -> Vec<T> {
        let (down, across) = if self.transpose {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let mut out = Vec::with_capacity(values.len());
        for r in 0..down {
            for c in 0..across {
                let r = if self.flip_rows { down - 1 - r } else { r };
                let c = if self.flip_cols { across - 1 - c } else { c };
                let (row, col) = if self.transpose { (c, r) } else { (r, c) };
                out.push(values[row * cols + col]);
            }
        }
        out
    }

    fn flip<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match (self.flip_rows, self.flip_cols) {
            (false, false) => x,
            (true, false) => x.flip([D - 2]),
            (false, true) => x.flip([D - 1]),
            (true, true) => x.flip([D - 2, D - 1]),
        }
    }
}

/// CELNet in inference mode on one device (batch norm on its running statistics, folded into
/// the convolutions).
#[derive(Clone, Debug)]
pub struct Classifier {
    model: Celnet,
    device: Device,
    tta: Tta,
}

impl Classifier {
    /// A classifier for `model` on `device` (a plain, non-autodiff device such as
    /// `Device::flex()`).
    pub fn new(model: Celnet, device: &Device) -> Self {
        Self {
            model: model.to_device(device).folded(),
            device: device.clone(),
            tta: Tta::Off,
        }
    }

    /// The same classifier scoring with test-time augmentation `tta`.
    pub fn with_tta(self, tta: Tta) -> Self {
        Self { tta, ..self }
    }

    pub fn tta(&self) -> Tta {
        self.tta
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn model(&self) -> &Celnet {
        &self.model
    }

    /// The score of one image of any supported size.
    pub async fn predict(&self, image: &RgbImage) -> Result<Prediction> {
        check_size(
            image.width(),
            image.height(),
            MAX_DECODE_PIXELS,
            "largest image predicted in one pass",
        )?;
        let x = Tensor::<4>::from_data(to_tensor_data(image), &self.device);
        let logits = self.logits(x).await?;
        Ok(Prediction::from_logit(logits[0]))
    }

    /// Logits of the 96-px windows every `stride` px that cover one normalised image
    /// `[1, 3, H, W]`, row-major (see [`Celnet::forward_windows`]).
    /// With test-time augmentation, each window's logit is the mean over the orientations of
    /// the whole image (the grid of windows maps onto itself).
    /// Where `kept` is given only those windows' logits are meaningful, and the pass computes
    /// only what they see ([`ActiveArea`]).
    /// A stride or an input size the windows cannot align with is an error, and so is a `kept`
    /// without one value per window.
    pub async fn window_logits(
        &self,
        image: Tensor<4>,
        stride: usize,
        kept: Option<&KeptWindows>,
    ) -> Result<Vec<f32>> {
        let [_, _, height, width] = image.dims();
        let grid = DenseWindows::of_glimpses(height, width, stride)?;
        if let Some(kept) = kept.filter(|k| k.kept.len() != grid.rows * grid.cols) {
            return Err(CelnetError::InvalidParameter(format!(
                "{} windows kept of a grid of {}x{}",
                kept.kept.len(),
                grid.cols,
                grid.rows
            )));
        }
        read(self.tta.mean(|orientation| {
            let image = orientation.apply(image.clone());
            let [_, _, height, width] = image.dims();
            let area = kept.map(|kept| {
                let oriented = DenseWindows::of_glimpses(height, width, stride)
                    .expect("an orientation of a grid the image fits");
                let windows = orientation.apply_grid(&kept.kept, grid.rows, grid.cols);
                ActiveArea::around(oriented, &windows, kept.context)
            });
            let logits = self.model.forward_windows(image, stride, area.as_ref());
            orientation.undo(logits)
        }))
        .await
    }

    /// [`Classifier::window_logits`] of an RGB crop (a tile of a dense scan).
    pub async fn crop_window_logits(
        &self,
        crop: &RgbImage,
        stride: usize,
        kept: Option<&KeptWindows>,
    ) -> Result<Vec<f32>> {
        let input = Tensor::<4>::from_data(to_tensor_data(crop), &self.device);
        self.window_logits(input, stride, kept).await
    }

    /// Logits of same-sized RGB images, in one forward pass.
    pub async fn image_logits(&self, images: &[RgbImage]) -> Result<Vec<f32>> {
        let batch = Tensor::<4>::from_data(batch_tensor_data(images)?, &self.device);
        self.logits(batch).await
    }

    /// Where one forward pass over `image` spends its time, by kind of operation (exact on the
    /// CPU backend; see [`crate::network::profile`]); `clock` in milliseconds.
    pub async fn profile_forward(&self, image: &RgbImage, clock: fn() -> f64) -> Result<Profile> {
        let (logits, profile) = profiled(clock, || {
            let x = Tensor::<4>::from_data(to_tensor_data(image), &self.device);
            self.model.forward(x)
        });
        // Reading is outside the profile: on the CPU the values are ready, nothing is pending.
        read(logits).await?;
        Ok(profile)
    }

    /// [`Classifier::profile_forward`] for the dense pass over one tile's crop (the windows
    /// every `stride` px that cover it), without test-time augmentation.
    pub async fn profile_window_logits(
        &self,
        crop: &RgbImage,
        stride: usize,
        clock: fn() -> f64,
    ) -> Result<Profile> {
        let (height, width) = (crop.height() as usize, crop.width() as usize);
        DenseWindows::of_glimpses(height, width, stride)?;
        let (logits, profile) = profiled(clock, || {
            let x = Tensor::<4>::from_data(to_tensor_data(crop), &self.device);
            self.model.forward_windows(x, stride, None)
        });
        read(logits).await?;
        Ok(profile)
    }

    /// Logits of a batch of normalised images `[B, 3, H, W]` (averaged over the orientations
    /// with test-time augmentation).
    pub async fn logits(&self, images: Tensor<4>) -> Result<Vec<f32>> {
        read(
            self.tta
                .mean(|orientation| self.model.forward(orientation.apply(images.clone()))),
        )
        .await
    }
}

/// Reads a float tensor back to the host. Asynchronous, because WebGPU has no synchronous read.
pub async fn read<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor
        .into_data_async()
        .await
        .map_err(|e| CelnetError::Backend(format!("reading a result failed: {e:?}")))?;
    data.try_to_vec::<f32>()
        .map_err(|e| CelnetError::Backend(format!("unexpected result type: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(2.0) - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-7);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!(sigmoid(-50.0) > 0.0 && sigmoid(-50.0).is_finite());
    }

    /// A 96x96 image that looks the same in all eight orientations: its colour depends only
    /// on the distance from the centre.
    fn symmetric_image() -> RgbImage {
        RgbImage::from_fn(96, 96, |x, y| {
            let (dx, dy) = (f64::from(x) - 47.5, f64::from(y) - 47.5);
            let d = (dx * dx + dy * dy).sqrt();
            image::Rgb([
                (128.0 + 100.0 * (d / 7.0).sin()) as u8,
                (90.0 + 60.0 * (d / 11.0).cos()) as u8,
                (200.0 - d) as u8,
            ])
        })
    }

    fn classifier() -> Classifier {
        let device = Device::flex();
        Classifier::new(crate::weights::load_default(&device).unwrap(), &device)
    }

    #[test]
    fn tta_of_an_orientation_free_image_is_the_plain_score() {
        let image = symmetric_image();
        let plain = pollster::block_on(classifier().predict(&image)).unwrap();
        let tta = pollster::block_on(classifier().with_tta(Tta::Dihedral).predict(&image)).unwrap();
        assert!(
            (plain.logit - tta.logit).abs() < 1e-4,
            "{plain:?} vs {tta:?}"
        );
    }

    #[test]
    fn tta_is_the_mean_over_the_eight_orientations() {
        // An image with an up and a left: each orientation scores differently.
        let image = RgbImage::from_fn(96, 96, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 2 + x / 3) as u8, ((x * y) % 251) as u8])
        });
        let classifier = classifier();
        let mut logits = Vec::new();
        for turns in 0..4 {
            let mut turned = image.clone();
            for _ in 0..turns {
                turned = image::imageops::rotate90(&turned);
            }
            for mirrored in [false, true] {
                let oriented = if mirrored {
                    image::imageops::flip_horizontal(&turned)
                } else {
                    turned.clone()
                };
                logits.push(
                    pollster::block_on(classifier.predict(&oriented))
                        .unwrap()
                        .logit,
                );
            }
        }
        let distinct = logits.iter().any(|&z| (z - logits[0]).abs() > 1e-3);
        assert!(
            distinct,
            "the orientations should score differently: {logits:?}"
        );
        let mean = logits.iter().sum::<f32>() / 8.0;
        let tta = pollster::block_on(classifier.with_tta(Tta::Dihedral).predict(&image)).unwrap();
        assert!((tta.logit - mean).abs() < 1e-4, "{} vs {mean}", tta.logit);
    }

    #[test]
    fn tta_window_logits_of_an_orientation_free_image_are_symmetric() {
        // 128x128 symmetric image, 96-px windows every 32 px: a 2x2 grid whose four windows
        // are orientations of one another, so TTA gives them one value.
        let image = RgbImage::from_fn(128, 128, |x, y| {
            let (dx, dy) = (f64::from(x) - 63.5, f64::from(y) - 63.5);
            let d = (dx * dx + dy * dy).sqrt();
            image::Rgb([
                (128.0 + 100.0 * (d / 9.0).sin()) as u8,
                120,
                (220.0 - d) as u8,
            ])
        });
        let classifier = classifier().with_tta(Tta::Dihedral);
        let input = Tensor::<4>::from_data(to_tensor_data(&image), classifier.device());
        let logits = pollster::block_on(classifier.window_logits(input, 32, None)).unwrap();
        assert_eq!(logits.len(), 4);
        for &z in &logits {
            assert!((z - logits[0]).abs() < 1e-4, "{logits:?}");
        }
    }

    #[test]
    fn a_folded_temperature_divides_the_logit() {
        let device = Device::flex();
        let model = crate::weights::load_default(&device).unwrap();
        let image = symmetric_image();
        let plain = pollster::block_on(Classifier::new(model.clone(), &device).predict(&image));
        let scaled = Classifier::new(model.with_temperature(2.5), &device);
        let scaled = pollster::block_on(scaled.predict(&image)).unwrap();
        let plain = plain.unwrap();
        assert!((plain.logit / 2.5 - scaled.logit).abs() < 1e-4);
        assert_eq!(plain.label, scaled.label);
    }

    #[test]
    fn a_folded_logit_map_scales_and_shifts_the_logit() {
        let device = Device::flex();
        let model = crate::weights::load_default(&device).unwrap();
        let image = symmetric_image();
        let plain = pollster::block_on(Classifier::new(model.clone(), &device).predict(&image));
        let mapped = Classifier::new(model.with_logit_map(0.5, 1.25), &device);
        let mapped = pollster::block_on(mapped.predict(&image)).unwrap();
        assert!((plain.unwrap().logit * 0.5 + 1.25 - mapped.logit).abs() < 1e-4);
    }

    #[test]
    fn the_threshold_itself_is_called_metastasis() {
        assert_eq!(Label::of(DECISION_THRESHOLD), Label::Metastasis);
        assert_eq!(Label::of(0.4999), Label::Normal);
        let p = Prediction::from_logit(0.0);
        assert_eq!((p.probability, p.label), (0.5, Label::Metastasis));
        assert_eq!(
            serde_json::to_value(Prediction::from_logit(-3.0)).unwrap()["label"],
            "normal"
        );
    }
}
