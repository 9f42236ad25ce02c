//! The plain classifier: CELNet's probability of metastasis for glimpses, with no gradients.
//!
//! Used wherever only the score is needed (predict, evaluation, training validation, deletion
//! curves, the page's score). The decision rule and its labels live here and nowhere else.

use burn::prelude::*;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};
use crate::input::{MAX_DECODE_PIXELS, check_size, to_tensor_data};
use crate::model::Celnet;

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

/// CELNet in inference mode on one device (batch norm on its running statistics, folded into
/// the convolutions).
#[derive(Clone, Debug)]
pub struct Classifier {
    model: Celnet,
    device: Device,
}

impl Classifier {
    /// A classifier for `model` on `device` (a plain, non-autodiff device such as
    /// `Device::flex()`).
    pub fn new(model: Celnet, device: &Device) -> Self {
        Self {
            model: model.to_device(device).folded(),
            device: device.clone(),
        }
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
    pub async fn window_logits(&self, image: Tensor<4>, stride: usize) -> Result<Vec<f32>> {
        read(self.model.forward_windows(image, stride)).await
    }

    /// Logits of a batch of normalised images `[B, 3, H, W]`.
    pub async fn logits(&self, images: Tensor<4>) -> Result<Vec<f32>> {
        read(self.model.forward(images)).await
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
