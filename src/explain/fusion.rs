//! Fusion: from the gradient passes' raw [`Evidence`] to CAM2, CAM3, CSM, Mc, CELM, the mask
//! and the regions, on the CPU.
//!
//! Fusion is cheap and needs no network, so a slider, a tuning grid or a faithfulness study can
//! re-fuse one [`PreparedEvidence`] as often as it likes.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::maps::{Map, luma, scaled_to_unit};
use super::params::CelmParams;
use super::regions::{Mask, Region, describe_regions, region_mask};
use crate::error::Result;
use crate::network::classifier::Prediction;

/// What the network says about one image: the logit and the raw gradient-derived maps.
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

/// The five maps of CELM, in the order they are shown and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapKind {
    /// Grad-CAM of F2.
    Cam2,
    /// Grad-CAM of F3.
    Cam3,
    /// The cancer saliency map Ms (guided backprop).
    Csm,
    /// The cancer activation map `Mc = a CAM3 + (1 - a) CAM2`.
    Mc,
    /// The evidence map `M = b (Mc * Ms) + (1 - b) Mc`.
    Celm,
}

impl MapKind {
    pub const ALL: [MapKind; 5] = [
        MapKind::Cam2,
        MapKind::Cam3,
        MapKind::Csm,
        MapKind::Mc,
        MapKind::Celm,
    ];

    /// The name of files, JSON keys and the page's layers.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::Cam2 => "cam2",
            MapKind::Cam3 => "cam3",
            MapKind::Csm => "csm",
            MapKind::Mc => "mc",
            MapKind::Celm => "celm",
        }
    }

    /// A caption for people.
    pub fn title(self) -> &'static str {
        match self {
            MapKind::Cam2 => "CAM2",
            MapKind::Cam3 => "CAM3",
            MapKind::Csm => "CSM",
            MapKind::Mc => "Mc (CAM2 + CAM3)",
            MapKind::Celm => "CELM",
        }
    }
}

/// Every map of CELM for one image, all at input resolution and in [0, 1].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Explanation {
    #[serde(flatten)]
    pub prediction: Prediction,
    pub cam2: Map,
    pub cam3: Map,
    pub csm: Map,
    pub mc: Map,
    pub celm: Map,
    /// Thresholded and smoothed evidence.
    pub mask: Mask,
    /// Connected regions of the mask, largest first.
    pub regions: Vec<Region>,
    pub params: CelmParams,
}

impl Explanation {
    pub fn map(&self, kind: MapKind) -> &Map {
        match kind {
            MapKind::Cam2 => &self.cam2,
            MapKind::Cam3 => &self.cam3,
            MapKind::Csm => &self.csm,
            MapKind::Mc => &self.mc,
            MapKind::Celm => &self.celm,
        }
    }

    /// The five maps with their kinds, for writers and renderers that treat them alike.
    pub fn maps(&self) -> impl Iterator<Item = (MapKind, &Map)> {
        MapKind::ALL.into_iter().map(|kind| (kind, self.map(kind)))
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

/// The CSM: the guided gradient's magnitude scaled to [0, 1] over all channels, grey by luma,
/// smoothed with `sigma`, rescaled to [0, 1].
///
/// The magnitude, because the sign only says whether brighter or darker pixels would raise the
/// score: dark tumour nuclei mostly get negative gradients. Min-max scaling the signed gradient
/// instead turned the CSM into a flat field with dark spots on those nuclei (pixel AUROC 0.47
/// against the tumour mask on held-out mosaics, against 0.62 for the magnitude).
pub fn saliency_map(guided_gradient: &[f32], width: usize, height: usize, sigma: f32) -> Map {
    let magnitude: Vec<f32> = guided_gradient.iter().map(|v| v.abs()).collect();
    let scaled = scaled_to_unit(&magnitude);
    luma(&scaled, width, height)
        .gaussian_blurred(sigma)
        .scaled_to_unit()
}

/// One image's evidence ready for many fusions: CAM2 and CAM3 at input resolution and the CSM
/// for some smoothing sigmas, computed once. The one fusion implementation of the crate.
#[derive(Clone, Debug)]
pub struct PreparedEvidence {
    pub width: usize,
    pub height: usize,
    pub prediction: Prediction,
    /// CAM2 at input resolution, scaled to [0, 1].
    pub cam2: Map,
    /// CAM3 at input resolution, scaled to [0, 1].
    pub cam3: Map,
    guided_gradient: Vec<f32>,
    csms: Vec<(f32, Map)>,
}

impl PreparedEvidence {
    /// Prepares `evidence` with CSMs for `sigmas`; other sigmas are computed when asked for.
    pub fn new(evidence: Evidence, sigmas: &[f32]) -> Self {
        let Evidence {
            width,
            height,
            logit,
            cam2,
            cam3,
            guided_gradient,
        } = evidence;
        let up = |m: &Map| m.resized_bilinear(width, height).scaled_to_unit();
        let csms = sigmas
            .iter()
            .map(|&s| (s, saliency_map(&guided_gradient, width, height, s)))
            .collect();
        Self {
            width,
            height,
            prediction: Prediction::from_logit(logit),
            cam2: up(&cam2),
            cam3: up(&cam3),
            guided_gradient,
            csms,
        }
    }

    /// The CSM smoothed with `sigma`.
    pub fn csm(&self, sigma: f32) -> Cow<'_, Map> {
        match self.csms.iter().find(|(s, _)| *s == sigma) {
            Some((_, m)) => Cow::Borrowed(m),
            None => Cow::Owned(saliency_map(
                &self.guided_gradient,
                self.width,
                self.height,
                sigma,
            )),
        }
    }

    /// One map under `params`, computing only what it depends on. `params` are not checked:
    /// callers validate them once (see [`CelmParams::validate`]).
    pub fn map(&self, kind: MapKind, params: &CelmParams) -> Cow<'_, Map> {
        match kind {
            MapKind::Cam2 => Cow::Borrowed(&self.cam2),
            MapKind::Cam3 => Cow::Borrowed(&self.cam3),
            MapKind::Csm => self.csm(params.sigma),
            MapKind::Mc => Cow::Owned(activation_map(&self.cam2, &self.cam3, params.alpha)),
            MapKind::Celm => {
                let mc = activation_map(&self.cam2, &self.cam3, params.alpha);
                Cow::Owned(evidence_map(&mc, &self.csm(params.sigma), params.beta))
            }
        }
    }

    /// All maps, the mask and the regions for `params`.
    pub fn fuse(&self, params: &CelmParams) -> Result<Explanation> {
        params.validate()?;
        Ok(self.fuse_checked(params))
    }

    /// [`PreparedEvidence::fuse`] for parameters already validated.
    pub(crate) fn fuse_checked(&self, params: &CelmParams) -> Explanation {
        let csm = self.csm(params.sigma).into_owned();
        let mc = activation_map(&self.cam2, &self.cam3, params.alpha);
        let celm = evidence_map(&mc, &csm, params.beta);
        let (mask, labels) = region_mask(&celm, params);
        let regions = describe_regions(&labels, &celm, params.min_region_area);
        Explanation {
            prediction: self.prediction,
            cam2: self.cam2.clone(),
            cam3: self.cam3.clone(),
            csm,
            mc,
            celm,
            mask,
            regions,
            params: *params,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csm_ranks_pixels_by_gradient_magnitude_whatever_its_sign() {
        // Two pixels, channel-first: a strong negative gradient and a weak positive one.
        let gradient = [-2.0, 1.0, -2.0, 1.0, -2.0, 1.0];
        assert_eq!(saliency_map(&gradient, 2, 1, 0.0).data, vec![1.0, 0.0]);
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

    #[test]
    fn single_maps_equal_the_full_fusion() {
        let (w, h) = (6usize, 5usize);
        let evidence = Evidence {
            width: w,
            height: h,
            logit: 1.5,
            cam2: Map::new(3, 3, (0..9).map(|i| i as f32).collect()),
            cam3: Map::new(2, 2, vec![0.0, 2.0, 1.0, 3.0]),
            guided_gradient: (0..3 * w * h)
                .map(|i| ((i * 7) % 11) as f32 - 5.0)
                .collect(),
        };
        let params = CelmParams {
            alpha: 0.6,
            beta: 0.4,
            sigma: 2.0,
            ..CelmParams::default()
        };
        // No CSM prepared for sigma 2: it is computed on demand and must agree.
        let prepared = PreparedEvidence::new(evidence, &[0.0]);
        let full = prepared.fuse(&params).unwrap();
        for kind in MapKind::ALL {
            assert_eq!(&*prepared.map(kind, &params), full.map(kind), "{kind:?}");
        }
        assert_eq!(full.prediction, Prediction::from_logit(1.5));
        assert!(
            prepared
                .fuse(&CelmParams {
                    beta: 1.5,
                    ..params
                })
                .is_err()
        );
    }
}
