//! CELM of chosen windows of a heatmap (the top tumour points, or windows asked for by
//! position), and their evidence in the input's pixels for reports and QuPath.

use image::RgbImage;
use serde::Serialize;

use crate::error::{CelnetError, Result};
use crate::explain::{CelmParams, Explainer, Explanation, PreparedEvidence};
use crate::network::model::GLIMPSE;
use crate::slide::heatmap::Point;
use crate::slide::image::ModelScaleImage;
use crate::slide::scale::ModelScale;

/// Why a window was explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceReason {
    /// One of the most probable tumour points.
    Top,
    /// Asked for by position.
    Requested,
}

impl EvidenceReason {
    /// `top` or `requested`, as in reports.
    pub fn parse(name: &str) -> Result<EvidenceReason> {
        match name {
            "top" => Ok(EvidenceReason::Top),
            "requested" => Ok(EvidenceReason::Requested),
            other => Err(CelnetError::InvalidParameter(format!(
                "unknown reason {other:?} for explaining a window; use top or requested"
            ))),
        }
    }
}

/// CELM of one window of a heatmap.
#[derive(Clone, Debug)]
pub struct WindowEvidence {
    /// Top-left corner of the 96x96 window, model-scale pixels.
    pub origin: (usize, usize),
    /// The window itself.
    pub image: RgbImage,
    pub explanation: Explanation,
}

impl WindowEvidence {
    /// The window of `image` (model scale) centred as near `point` as the image allows.
    pub fn crop(
        image: &(impl ModelScaleImage + ?Sized),
        point: &Point,
    ) -> Result<((usize, usize), RgbImage)> {
        let (width, height) = image.dimensions();
        if width < GLIMPSE || height < GLIMPSE {
            return Err(CelnetError::ImageTooSmall {
                width: width as u32,
                height: height as u32,
                min: GLIMPSE as u32,
            });
        }
        // Rounded, not truncated: a point that went to the input's pixels and back (the page
        // asks for a window by input coordinates) may land a hair below a whole pixel.
        let half = (GLIMPSE / 2) as f64;
        let x = ((point.x - half).max(0.0).round() as usize).min(width - GLIMPSE);
        let y = ((point.y - half).max(0.0).round() as usize).min(height - GLIMPSE);
        Ok(((x, y), image.region(x, y, GLIMPSE, GLIMPSE)?))
    }

    /// CELM of the windows centred on `points` (for instance the top tumour points).
    pub async fn explain_points(
        explainer: &Explainer,
        image: &(impl ModelScaleImage + ?Sized),
        points: &[Point],
        params: &CelmParams,
    ) -> Result<Vec<WindowEvidence>> {
        params.validate()?;
        let mut out = Vec::with_capacity(points.len());
        for point in points {
            let (origin, window) = Self::crop(image, point)?;
            out.push(Self::explain(explainer, origin, window, params).await?);
        }
        Ok(out)
    }

    /// CELM of `window`, a crop whose top-left corner is `origin`.
    pub async fn explain(
        explainer: &Explainer,
        origin: (usize, usize),
        window: RgbImage,
        params: &CelmParams,
    ) -> Result<WindowEvidence> {
        let evidence = explainer.evidence(&window).await?;
        let explanation = PreparedEvidence::new(evidence, &[params.sigma]).fuse_checked(params);
        Ok(WindowEvidence {
            origin,
            image: window,
            explanation,
        })
    }
}

/// One explained window, in the input's full-resolution pixels.
#[derive(Clone, Debug, Serialize)]
pub struct ExplainedWindow {
    pub reason: EvidenceReason,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub probability: f32,
    /// The file its evidence overlay was written to, where one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay_png: Option<String>,
    pub regions: Vec<EvidenceRegion>,
}

/// A CELM region's bounding box in the input's pixels.
#[derive(Clone, Debug, Serialize)]
pub struct EvidenceRegion {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
    pub mean_evidence: f32,
    pub max_evidence: f32,
}

impl ExplainedWindow {
    /// `window` (model-scale px) in the input's pixels.
    pub fn new(window: &WindowEvidence, reason: EvidenceReason, scale: &ModelScale) -> Self {
        let to_input = scale.input_per_model();
        let (ox, oy) = (window.origin.0 as f64, window.origin.1 as f64);
        let side = GLIMPSE as f64 * to_input;
        let explanation = &window.explanation;
        ExplainedWindow {
            reason,
            x: ox * to_input,
            y: oy * to_input,
            width: side,
            height: side,
            probability: explanation.prediction.probability,
            overlay_png: None,
            regions: explanation
                .regions
                .iter()
                .map(|r| EvidenceRegion {
                    x0: (ox + r.bbox.x0 as f64) * to_input,
                    y0: (oy + r.bbox.y0 as f64) * to_input,
                    x1: (ox + r.bbox.x1 as f64) * to_input,
                    y1: (oy + r.bbox.y1 as f64) * to_input,
                    mean_evidence: r.mean_evidence,
                    max_evidence: r.max_evidence,
                })
                .collect(),
        }
    }
}
