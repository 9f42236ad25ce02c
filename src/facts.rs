//! What the page shows that the crate decides: numbers and words the page would otherwise
//! copy (and let drift). The page's worker asks for them once ([`PageFacts::get`], exported to
//! JavaScript as `page_facts`); a test keeps the page's JavaScript free of copies.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::explain::render::OVERLAY_OPACITY;
use crate::explain::{CelmParams, MapKind};
use crate::network::classifier::DECISION_THRESHOLD;
use crate::network::model::GLIMPSE;
use crate::slide::analysis::DEFAULT_TOP_K;
use crate::slide::grid::{DEFAULT_STRIDE, STRIDES};
use crate::slide::lesions::Category;
use crate::slide::scale::{GLIMPSE_MAX_SIDE, MAGNIFICATION_HINT, MODEL_MPP, PLAUSIBLE_MPP};
use crate::slide::scan::PAGE_TILE;

/// A map kind's name (in results) and its caption.
#[derive(Clone, Debug, Serialize)]
pub struct MapKindFact {
    pub name: &'static str,
    pub title: &'static str,
}

/// See the module's documentation. (The colour legend, 256 RGBA entries, is added by the
/// browser bindings as pixels.)
#[derive(Clone, Debug, Serialize)]
pub struct PageFacts {
    /// CELM's default parameters, the sliders' starting point.
    pub default_params: CelmParams,
    pub map_kinds: Vec<MapKindFact>,
    /// Probability at or above which a window or a glimpse is called metastatic.
    pub decision_threshold: f32,
    pub overlay_opacity: f32,
    /// A window's (and a PCam glimpse's) side in model-scale pixels.
    pub window_side: usize,
    /// Largest side of an image scored whole as one glimpse.
    pub glimpse_max_side: u32,
    /// Micrometres per pixel of the model's scale.
    pub model_mpp: f64,
    /// Pixel sizes accepted, µm/px.
    pub plausible_mpp: [f64; 2],
    pub magnification_hint: &'static str,
    /// Largest span of windows, model-scale px, that the page scores as one tile: an image
    /// larger than this at the model's scale is scored in several, by the pool of workers.
    pub page_tile: usize,
    /// Distance between windows, model-scale px: the default and the range offered.
    pub default_stride: usize,
    pub strides: [usize; 2],
    /// Windows of the most probable tumour points explained for a slide's exports.
    pub default_top_k: usize,
    /// A slide or lesion category's name in results and its words (`itc`: isolated tumour
    /// cells).
    pub categories: BTreeMap<&'static str, &'static str>,
}

impl PageFacts {
    pub fn get() -> PageFacts {
        PageFacts {
            default_params: CelmParams::default(),
            map_kinds: MapKind::ALL
                .iter()
                .map(|k| MapKindFact {
                    name: k.name(),
                    title: k.title(),
                })
                .collect(),
            decision_threshold: DECISION_THRESHOLD,
            overlay_opacity: OVERLAY_OPACITY,
            window_side: GLIMPSE,
            glimpse_max_side: GLIMPSE_MAX_SIDE,
            model_mpp: MODEL_MPP,
            plausible_mpp: [*PLAUSIBLE_MPP.start(), *PLAUSIBLE_MPP.end()],
            magnification_hint: MAGNIFICATION_HINT,
            page_tile: PAGE_TILE,
            default_stride: DEFAULT_STRIDE,
            strides: [*STRIDES.start(), *STRIDES.end()],
            default_top_k: DEFAULT_TOP_K,
            categories: Category::ALL
                .iter()
                .map(|c| (c.name(), c.describe()))
                .collect(),
        }
    }
}
