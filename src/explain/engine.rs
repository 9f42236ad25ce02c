//! The gradient passes of CELM.
//!
//! Two passes over one glimpse give the raw [`Evidence`]:
//! 1. **Grad-CAM** on F2 and F3. The weights are total derivatives of the logit: for F2 that
//!    includes the path through module 3 as well as the direct companion path.
//! 2. **Guided backpropagation** to the input for the cancer saliency map (CSM).

use burn::prelude::*;
use burn::tensor::activation::relu;
use image::RgbImage;
use serde::Serialize;

use super::fusion::{Evidence, Explanation, PreparedEvidence};
use super::maps::Map;
use super::params::CelmParams;
use crate::error::{CelnetError, Result};
use crate::input::{check_size, to_tensor_data};
use crate::network::classifier::{Classifier, read};
use crate::network::guided::ReluKind;
use crate::network::model::Celnet;

/// The largest image explained in one pass (about 1 megapixel): activations of every layer are
/// kept for the backward passes, so memory grows with the area.
pub const MAX_EXPLAIN_PIXELS: u64 = 1024 * 1024;

/// CELNet frozen on an autodiff device: parameters need no gradient (which makes the backward
/// passes 2-3x cheaper) and batch norm, on its running statistics, is folded into the
/// convolutions.
#[derive(Clone, Debug)]
pub struct Explainer {
    model: Celnet,
    device: Device,
}

impl Explainer {
    /// An explainer for `model` on `device` (a plain, non-autodiff device such as
    /// `Device::flex()`).
    pub fn new(model: Celnet, device: &Device) -> Self {
        Self {
            model: model
                .to_device(device)
                .folded()
                .to_device(&device.clone().autodiff())
                .freeze(),
            device: device.clone(),
        }
    }

    /// The plain device this explainer runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A classifier sharing this explainer's weights (no copy of the parameters).
    pub fn classifier(&self) -> Classifier {
        Classifier::new(self.model.valid(), &self.device)
    }

    /// `image` as a `[1, 3, H, W]` tensor on the autodiff device.
    pub fn autodiff_input(&self, image: &RgbImage) -> Tensor<4> {
        Tensor::from_data(to_tensor_data(image), &self.device.clone().autodiff())
    }

    /// Grad-CAM's ingredients: F2 and F3 with the total derivatives of the logit.
    pub fn layer_gradients(&self, x: Tensor<4>) -> Result<LayerGradients> {
        let f2 = self.model.features2(x, ReluKind::Standard);
        CamGraph::new(&self.model, f2).backward()
    }

    /// Gradient of the logit with respect to the input, through standard or guided ReLUs.
    pub fn input_gradient(&self, x: Tensor<4>, relu: ReluKind) -> Result<Tensor<4>> {
        let x = x.detach().require_grad();
        let logit = self.model.forward_with(x.clone(), relu);
        let grads = logit.backward();
        x.grad(&grads).ok_or_else(missing_gradient)
    }

    /// The two gradient passes of CELM on one image.
    pub async fn evidence(&self, image: &RgbImage) -> Result<Evidence> {
        Ok(self.evidence_timed(image, &|| 0.0).await?.0)
    }

    /// [`Explainer::evidence`] and where its time went, by `clock` (milliseconds). The phases
    /// are exact on the CPU; a GPU backend runs queued work later, at the reads.
    ///
    /// One forward pass to F2 serves both gradient passes: a guided ReLU computes a plain ReLU
    /// forward, only its backward differs. Module 3 runs twice from F2, once with guided ReLUs
    /// for the saliency map and once with standard ones from a leaf at F2 for Grad-CAM, and no
    /// parameter gradient is computed.
    pub async fn evidence_timed(
        &self,
        image: &RgbImage,
        clock: &dyn Fn() -> f64,
    ) -> Result<(Evidence, ExplainPhases)> {
        check_size(
            image.width(),
            image.height(),
            MAX_EXPLAIN_PIXELS,
            "largest image explained in one pass",
        )?;
        let start = clock();
        let x = self.autodiff_input(image).require_grad();
        let f2 = self.model.features2(x.clone(), ReluKind::Guided);
        let cam = CamGraph::new(&self.model, f2.clone().detach());
        let f3 = self.model.features3(f2.clone(), ReluKind::Guided);
        let guided_logit = self.model.classify(f2, f3);
        let forward = clock();

        let layers = cam.backward()?;
        let cam2 = grad_cam(layers.f2, layers.g2);
        let cam3 = grad_cam(layers.f3, layers.g3);
        let cam_backward = clock();

        let guided = x
            .grad(&guided_logit.backward())
            .ok_or_else(missing_gradient)?;
        let guided_backward = clock();

        let [_, _, h2, w2] = cam2.dims();
        let [_, _, h3, w3] = cam3.dims();
        let evidence = Evidence {
            width: image.width() as usize,
            height: image.height() as usize,
            logit: read(layers.logit).await?[0],
            cam2: Map::new(w2, h2, read(cam2).await?),
            cam3: Map::new(w3, h3, read(cam3).await?),
            guided_gradient: read(guided).await?,
        };
        let phases = ExplainPhases {
            forward: forward - start,
            grad_cam_backward: cam_backward - forward,
            guided_backward: guided_backward - cam_backward,
            read: clock() - guided_backward,
        };
        Ok((evidence, phases))
    }

    /// Evidence and every map for one image.
    pub async fn explain(&self, image: &RgbImage, params: &CelmParams) -> Result<Explanation> {
        params.validate()?;
        let evidence = self.evidence(image).await?;
        Ok(PreparedEvidence::new(evidence, &[params.sigma]).fuse_checked(params))
    }
}

/// Milliseconds spent in each part of [`Explainer::evidence_timed`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ExplainPhases {
    /// The shared forward pass to F2 and both passes through module 3.
    pub forward: f64,
    /// Back from the logit to F3 and F2, and the two Grad-CAM maps.
    pub grad_cam_backward: f64,
    /// Back from the logit to the input through guided ReLUs.
    pub guided_backward: f64,
    /// Reading the logit and the maps back from the device.
    pub read: f64,
}

/// Module 3 and the classifier from a leaf at F2 with standard ReLUs: the graph whose backward
/// gives Grad-CAM's gradients.
///
/// F3's leaf re-enters as `f3_leaf + (f3 - f3.detach())`: the value is exactly F3, the leaf
/// receives dy/dF3, and the zero-valued difference carries dy/dF3 back through module 3 into
/// F2, so F2's gradient includes that path as well as F2's own companion path.
struct CamGraph {
    f2: Tensor<4>,
    f3: Tensor<4>,
    logit: Tensor<2>,
}

impl CamGraph {
    fn new(model: &Celnet, f2: Tensor<4>) -> Self {
        let f2 = f2.detach().require_grad();
        let f3 = model.features3(f2.clone(), ReluKind::Standard);
        let f3_leaf = f3.clone().detach().require_grad();
        let f3_joined = f3_leaf.clone() + (f3.clone() - f3.detach());
        let logit = model.classify(f2.clone(), f3_joined);
        Self {
            f2,
            f3: f3_leaf,
            logit,
        }
    }

    fn backward(self) -> Result<LayerGradients> {
        let grads = self.logit.backward();
        Ok(LayerGradients {
            g2: self.f2.grad(&grads).ok_or_else(missing_gradient)?,
            g3: self.f3.grad(&grads).ok_or_else(missing_gradient)?,
            f2: self.f2.detach().inner(),
            f3: self.f3.detach().inner(),
            logit: self.logit.detach().inner(),
        })
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
