//! CELM's fusion and region parameters.

use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};

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
/// (`celnet localize-tune`) for the shipped weights on 300 mosaics from the selection half of
/// the validation split (docs/localisation.md).
impl Default for CelmParams {
    fn default() -> Self {
        Self {
            alpha: 0.25,
            beta: 0.25,
            threshold: 0.3,
            sigma: 0.0,
            mask_sigma: 1.0,
            min_region_area: 16,
        }
    }
}

impl CelmParams {
    /// Largest smoothing sigma accepted, in pixels.
    pub const MAX_SIGMA: f32 = 32.0;

    /// Checks every parameter's range. Library functions that fuse call it once on entry.
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
            if !(0.0..=Self::MAX_SIGMA).contains(&v) {
                return Err(CelnetError::InvalidParameter(format!(
                    "{name} must be in [0, {}] pixels, got {v}",
                    Self::MAX_SIGMA
                )));
            }
        }
        Ok(())
    }
}
