//! CELM: the evidence engine.
//!
//! Two gradient passes over one glimpse give the raw [`Evidence`]:
//! 1. **Grad-CAM** on F2 and F3. The weights are total derivatives of the logit: for F2 that
//!    includes the path through module 3 as well as the direct companion path.
//! 2. **Guided backpropagation** to the input for the cancer saliency map (CSM).
//!
//! [`Evidence::fuse`] then builds CAM2, CAM3, CSM, Mc, CELM, the mask and the regions on the CPU.
//! Fusion is cheap and needs no network, so sliders can re-fuse instantly.

use burn::prelude::*;
use burn::tensor::activation::relu;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};
use crate::guided::ReluKind;
use crate::input::{check_size, to_tensor_data};
use crate::maps::{Map, luma, scaled_to_unit};
use crate::model::Celnet;
use crate::regions::{Labels, Mask, Region, describe_regions, label_components};

/// The largest image explained in one pass (about 1 megapixel): activations of every layer are
/// kept for the backward passes, so memory grows with the area.
pub const MAX_EXPLAIN_PIXELS: u64 = 1024 * 1024;

/// Fusion and region parameters of CELM.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CelmParams {
    /// Weight `a` of CAM3 against CAM2 in `Mc = a CAM3 + (1 - a) CAM2`, in [0, 1].
    pub alpha: f32,
    /// Weight `b` of the saliency-gated term in `M = b (Mc * Ms) + (1 - b) Mc`, in [0, 1].
    pub beta: f32,
    /// Evidence level in [0, 1] at or above which a pixel belongs to a region.
    pub threshold: f32,
    /// Standard deviation in pixels of the Gaussian that smooths the CSM (0 = none).
    pub sigma: f32,
    /// Standard deviation in pixels of the Gaussian that smooths the region mask (0 = none).
    pub mask_sigma: f32,
    /// Regions smaller than this many pixels are dropped.
    pub min_region_area: usize,
}

/// Defaults of `alpha`, `beta`, `threshold` and `sigma`: the best region F1 of a grid search
/// (`celnet localize-tune`) on 300 mosaics from the validation split; README, "Localisation".
impl Default for CelmParams {
    fn default() -> Self {
        Self {
            alpha: 0.25,
            beta: 0.25,
            threshold: 0.35,
            sigma: 1.0,
            mask_sigma: 1.0,
            min_region_area: 16,
        }
    }
}

impl CelmParams {
    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        let unit = |name: &str, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(CelnetError::InvalidParameter(format!(
                    "{name} must be in [0, 1], got {v}"
                )))
            }
        };
        unit("alpha", self.alpha)?;
        unit("beta", self.beta)?;
        unit("threshold", self.threshold)?;
        for (name, v) in [("sigma", self.sigma), ("mask_sigma", self.mask_sigma)] {
            if !(0.0..=32.0).contains(&v) {
                return Err(CelnetError::InvalidParameter(format!(
                    "{name} must be in [0, 32] pixels, got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// What the network says about one image: the logit and the raw gradient-derived maps.
/// Everything else is derived from this by [`Evidence::fuse`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evidence {
    /// Input width and height in pixels.
    pub width: usize,
    pub height: usize,
    /// Cancer score before the sigmoid.
    pub logit: f32,
    /// `ReLU(sum_k alpha_k F2_k)` at F2 resolution, unscaled.
    pub cam2: Map,
    /// `ReLU(sum_k alpha_k F3_k)` at F3 resolution, unscaled.
    pub cam3: Map,
    /// Guided-backpropagation gradient of the logit w.r.t. the input, channel-first `3 x H x W`.
    pub guided_gradient: Vec<f32>,
}

/// Every map of CELM for one image, all at input resolution and in [0, 1].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Explanation {
    pub logit: f32,
    pub probability: f32,
    /// Grad-CAM of F2, upsampled and scaled.
    pub cam2: Map,
    /// Grad-CAM of F3, upsampled and scaled.
    pub cam3: Map,
    /// Cancer saliency map Ms.
    pub csm: Map,
    /// Cancer activation map Mc.
    pub mc: Map,
    /// The evidence map M.
    pub celm: Map,
    /// Thresholded and smoothed evidence.
    pub mask: Mask,
    /// Connected regions of the mask, largest first.
    pub regions: Vec<Region>,
    pub params: CelmParams,
}

impl Explanation {
    /// The five maps with their names (`cam2`, `cam3`, `csm`, `mc`, `celm`), for writers and
    /// renderers that treat them alike.
    pub fn named_maps(&self) -> [(&'static str, &Map); 5] {
        [
            ("cam2", &self.cam2),
            ("cam3", &self.cam3),
            ("csm", &self.csm),
            ("mc", &self.mc),
            ("celm", &self.celm),
        ]
    }
}

/// The cancer activation map `Mc = a CAM3 + (1 - a) CAM2`.
pub fn activation_map(cam2: &Map, cam3: &Map, alpha: f32) -> Map {
    cam3.zip_with(cam2, |c3, c2| alpha * c3 + (1.0 - alpha) * c2)
}

/// The evidence map `M = b (Mc * Ms) + (1 - b) Mc`: the activation map, partly gated by the
/// saliency map.
pub fn evidence_map(mc: &Map, csm: &Map, beta: f32) -> Map {
    mc.zip_with(csm, |m, s| beta * m * s + (1.0 - beta) * m)
}

/// The region mask of any evidence-like map (thresholded at `params.threshold`, smoothed with
/// `params.mask_sigma`) and its connected components.
pub fn region_mask(map: &Map, params: &CelmParams) -> (Mask, Labels) {
    let mask = Mask::threshold(map, params.threshold).smoothed(params.mask_sigma);
    let labels = label_components(&mask);
    (mask, labels)
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

impl Evidence {
    /// CAM2 and CAM3 at input resolution, each scaled to [0, 1].
    pub fn cams(&self) -> (Map, Map) {
        let up = |m: &Map| m.resized_bilinear(self.width, self.height).scaled_to_unit();
        (up(&self.cam2), up(&self.cam3))
    }

    /// The CSM: the guided gradient's magnitude scaled to [0, 1] over all channels, grey by
    /// luma, smoothed with `sigma`, rescaled to [0, 1].
    ///
    /// The magnitude, because the sign only says whether brighter or darker pixels would raise
    /// the score: dark tumour nuclei mostly get negative gradients. Min-max scaling the signed
    /// gradient instead turned the CSM into a flat field with dark spots on those nuclei (pixel
    /// AUROC 0.47 against the tumour mask on held-out mosaics, against 0.62 for the magnitude).
    pub fn csm(&self, sigma: f32) -> Map {
        let magnitude: Vec<f32> = self.guided_gradient.iter().map(|v| v.abs()).collect();
        let scaled = scaled_to_unit(&magnitude);
        luma(&scaled, self.width, self.height)
            .gaussian_blurred(sigma)
            .scaled_to_unit()
    }

    /// All maps, the mask and the regions for the given parameters.
    pub fn fuse(&self, params: &CelmParams) -> Result<Explanation> {
        params.validate()?;
        let (cam2, cam3) = self.cams();
        let csm = self.csm(params.sigma);
        let mc = activation_map(&cam2, &cam3, params.alpha);
        let celm = evidence_map(&mc, &csm, params.beta);
        let (mask, labels) = region_mask(&celm, params);
        let regions = describe_regions(&labels, &celm, params.min_region_area);
        Ok(Explanation {
            logit: self.logit,
            probability: sigmoid(self.logit),
            cam2,
            cam3,
            csm,
            mc,
            celm,
            mask,
            regions,
            params: *params,
        })
    }
}

/// Runs CELNet and CELM on one device.
///
/// Holds the model twice: a plain copy for predictions and a frozen copy on the autodiff
/// device for explanations (parameters need no gradient there, which makes the backward
/// passes 2-3x cheaper; batch norm uses its running statistics).
#[derive(Debug)]
pub struct Engine {
    predictor: Celnet,
    explainer: Celnet,
    device: Device,
}

impl Engine {
    /// An engine for `model` on `device` (a plain, non-autodiff device such as `Device::flex()`).
    pub fn new(model: Celnet, device: &Device) -> Self {
        let autodiff = device.clone().autodiff();
        let explainer = model.to_device(&autodiff).freeze();
        let predictor = explainer.valid();
        Self {
            predictor,
            explainer,
            device: device.clone(),
        }
    }

    /// The plain device this engine runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The inference copy of the model.
    pub fn model(&self) -> &Celnet {
        &self.predictor
    }

    /// Logit for one image of any supported size.
    pub async fn predict(&self, image: &RgbImage) -> Result<f32> {
        check_size(
            image.width(),
            image.height(),
            crate::input::MAX_DECODE_PIXELS,
            "largest image predicted in one pass",
        )?;
        let x = Tensor::<4>::from_data(to_tensor_data(image), &self.device);
        let logits = self.predictor.forward(x);
        let values = read(logits).await?;
        Ok(values[0])
    }

    /// Logits for a batch of normalised images `[B, 3, H, W]`.
    pub async fn predict_batch(&self, images: Tensor<4>) -> Result<Vec<f32>> {
        read(self.predictor.forward(images)).await
    }

    /// The frozen model used for gradient passes (on the autodiff device).
    pub fn explainer(&self) -> &Celnet {
        &self.explainer
    }

    /// `image` as a `[1, 3, H, W]` tensor on the autodiff device.
    pub fn autodiff_input(&self, image: &RgbImage) -> Tensor<4> {
        Tensor::from_data(to_tensor_data(image), &self.device.clone().autodiff())
    }

    /// Grad-CAM's ingredients: F2 and F3 with the total derivatives of the logit.
    ///
    /// The graph is cut at F2 and F3 so their gradients are kept. F3's leaf re-enters as
    /// `f3_leaf + (f3 - f3.detach())`: the value is exactly F3, the leaf receives dy/dF3, and
    /// the zero-valued difference carries dy/dF3 back through module 3 into F2, so F2's
    /// gradient includes that path as well as F2's own companion path.
    pub fn layer_gradients(&self, x: Tensor<4>) -> Result<LayerGradients> {
        let f2 = self
            .explainer
            .features2(x, ReluKind::Standard)
            .detach()
            .require_grad();
        let f3 = self.explainer.features3(f2.clone(), ReluKind::Standard);
        let f3_leaf = f3.clone().detach().require_grad();
        let f3_joined = f3_leaf.clone() + (f3.clone() - f3.detach());
        let logit = self.explainer.classify(f2.clone(), f3_joined);
        let grads = logit.backward();
        Ok(LayerGradients {
            g2: f2.grad(&grads).ok_or_else(missing_gradient)?,
            g3: f3_leaf.grad(&grads).ok_or_else(missing_gradient)?,
            f2: f2.detach().inner(),
            f3: f3_leaf.detach().inner(),
            logit: logit.detach().inner(),
        })
    }

    /// Gradient of the logit with respect to the input, through standard or guided ReLUs.
    pub fn input_gradient(&self, x: Tensor<4>, relu: ReluKind) -> Result<Tensor<4>> {
        let x = x.detach().require_grad();
        let logit = self.explainer.forward_with(x.clone(), relu);
        let grads = logit.backward();
        x.grad(&grads).ok_or_else(missing_gradient)
    }

    /// The two gradient passes of CELM on one image.
    pub async fn evidence(&self, image: &RgbImage) -> Result<Evidence> {
        check_size(
            image.width(),
            image.height(),
            MAX_EXPLAIN_PIXELS,
            "largest image explained in one pass",
        )?;
        let x = self.autodiff_input(image);
        let layers = self.layer_gradients(x.clone())?;
        let cam2 = grad_cam(layers.f2, layers.g2);
        let cam3 = grad_cam(layers.f3, layers.g3);
        let guided = self.input_gradient(x, ReluKind::Guided)?;

        let [_, _, h2, w2] = cam2.dims();
        let [_, _, h3, w3] = cam3.dims();
        Ok(Evidence {
            width: image.width() as usize,
            height: image.height() as usize,
            logit: read(layers.logit).await?[0],
            cam2: Map::new(w2, h2, read(cam2).await?),
            cam3: Map::new(w3, h3, read(cam3).await?),
            guided_gradient: read(guided).await?,
        })
    }

    /// Evidence and every map for one image.
    pub async fn explain(&self, image: &RgbImage, params: &CelmParams) -> Result<Explanation> {
        params.validate()?;
        self.evidence(image).await?.fuse(params)
    }
}

/// Feature maps and the logit's total derivatives at the two explained layers (plain tensors).
#[derive(Debug)]
pub struct LayerGradients {
    /// The logit, `[1, 1]`.
    pub logit: Tensor<2>,
    pub f2: Tensor<4>,
    /// dy/dF2, including the path through module 3.
    pub g2: Tensor<4>,
    pub f3: Tensor<4>,
    /// dy/dF3.
    pub g3: Tensor<4>,
}

/// Grad-CAM weights: the spatial mean of the gradient per channel, `[1, K, 1, 1]`.
pub fn grad_cam_weights(gradient: Tensor<4>) -> Tensor<4> {
    gradient.mean_dims(&[2, 3])
}

/// `ReLU(sum_k mean_ij(dy/dF_k) F_k)` for features and gradients `[1, K, h, w]`.
pub fn grad_cam(features: Tensor<4>, gradient: Tensor<4>) -> Tensor<4> {
    relu((features * grad_cam_weights(gradient)).sum_dim(1))
}

fn missing_gradient() -> CelnetError {
    CelnetError::Backend("the backward pass produced no gradient".into())
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
    fn csm_ranks_pixels_by_gradient_magnitude_whatever_its_sign() {
        // Two pixels, channel-first: a strong negative gradient and a weak positive one.
        let evidence = Evidence {
            width: 2,
            height: 1,
            logit: 0.0,
            cam2: Map::zeros(1, 1),
            cam3: Map::zeros(1, 1),
            guided_gradient: vec![-2.0, 1.0, -2.0, 1.0, -2.0, 1.0],
        };
        assert_eq!(evidence.csm(0.0).data, vec![1.0, 0.0]);
    }

    #[test]
    fn fusion_matches_hand_computation() {
        let cam2 = Map::new(2, 1, vec![1.0, 0.0]);
        let cam3 = Map::new(2, 1, vec![0.0, 1.0]);
        let mc = activation_map(&cam2, &cam3, 0.25);
        assert_eq!(mc.data, vec![0.75, 0.25]);
        let csm = Map::new(2, 1, vec![0.5, 1.0]);
        // b Mc Ms + (1 - b) Mc with b = 0.5: 0.5 * 0.375 + 0.375, 0.5 * 0.25 + 0.125.
        assert_eq!(evidence_map(&mc, &csm, 0.5).data, vec![0.5625, 0.25]);
    }
}
