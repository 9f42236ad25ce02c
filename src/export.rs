//! What an analysed image is written as, the same natively and in the page: the summary, the
//! window table (CSV), the GeoJSON QuPath imports, and the pictures. Coordinates are the
//! input's full-resolution pixels; `to_input` multiplies model-scale pixels into them.

use image::{GrayImage, RgbImage};
use serde::Serialize;
use serde_json::{Value, json};

use crate::classifier::{DECISION_THRESHOLD, Tta};
use crate::explain::Map;
use crate::explain::render::{OVERLAY_OPACITY, colormap, overlay};
use crate::heatmap::{Heatmap, Mode, Point, SlideScores, TissueMask, WindowEvidence};
use crate::model::GLIMPSE;
use crate::scale::MppSource;

/// What an analysis found; coordinates are full-resolution pixels of the input.
#[derive(Clone, Debug, Serialize)]
pub struct HeatmapReport {
    pub file: String,
    pub width: u32,
    pub height: u32,
    pub mpp: f64,
    pub mpp_source: MppSource,
    /// The pyramid level read, for slide files read tile by tile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<usize>,
    /// Input pixels are scaled by this factor to reach the model's scale.
    pub factor: f64,
    pub stride: usize,
    pub grid: [usize; 2],
    /// Windows scored (their centre lies in tissue).
    pub windows: usize,
    pub tissue_fraction: f64,
    /// The highest window probability; absent without tissue.
    pub slide_score: Option<f32>,
    /// Other ways to sum the heatmap up (see `celnet slide-eval`).
    pub slide_scores: SlideScores,
    pub points: Vec<Point>,
    /// CELM of the top tumour points' windows and of requested ones.
    pub evidence: Vec<ExplainedWindow>,
    pub mode: Mode,
    /// Test-time augmentation of the window scores, where the report's maker chose it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<Tta>,
    /// Files written, where the analysis wrote any.
    pub files: Vec<String>,
}

/// One explained window, in the input's full-resolution pixels.
#[derive(Clone, Debug, Serialize)]
pub struct ExplainedWindow {
    /// `top` for a top tumour point, `requested` for a window asked for by position.
    pub reason: &'static str,
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
    pub fn new(window: &WindowEvidence, reason: &'static str, to_input: f64) -> Self {
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

/// `points` (model-scale px) in the input's pixels.
pub fn points_in_input(points: &[Point], to_input: f64) -> Vec<Point> {
    points
        .iter()
        .map(|p| Point {
            x: p.x * to_input,
            y: p.y * to_input,
            ..*p
        })
        .collect()
}

/// Top-left corners (input pixels) and probabilities of the scored windows, row by row.
pub fn scored_windows(heatmap: &Heatmap, to_input: f64) -> Vec<(f64, f64, f32)> {
    let grid = heatmap.grid;
    (0..grid.rows)
        .flat_map(|row| (0..grid.cols).map(move |col| (col, row)))
        .filter_map(|(col, row)| {
            let p = heatmap.get(col, row)?;
            let (x, y) = grid.origin(col, row);
            Some((x as f64 * to_input, y as f64 * to_input, p))
        })
        .collect()
}

/// The window table: `x,y,width,height,probability` per scored window, input pixels.
pub fn tiles_csv(heatmap: &Heatmap, to_input: f64) -> String {
    let side = GLIMPSE as f64 * to_input;
    let mut csv = String::from("x,y,width,height,probability\n");
    for (x, y, p) in scored_windows(heatmap, to_input) {
        csv.push_str(&format!("{x:.1},{y:.1},{side:.1},{side:.1},{p:.6}\n"));
    }
    csv
}

/// Everything for QuPath in input pixels, in the form QuPath's GeoJSON reader takes (v0.4 and
/// later: `objectType`, `classification` with `name` and an RGB `color`, `measurements` as an
/// object): the scored windows as tiles classified by the decision threshold with their
/// probability, the tumour points (already in input pixels), and the bounding boxes of the
/// explained windows' CELM regions.
pub fn geojson(
    heatmap: &Heatmap,
    points: &[Point],
    evidence: &[ExplainedWindow],
    to_input: f64,
) -> Value {
    let side = GLIMPSE as f64 * to_input;
    let rectangle = |x0: f64, y0: f64, x1: f64, y1: f64| {
        json!({
            "type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
        })
    };
    let mut features = Vec::new();
    for (x, y, p) in scored_windows(heatmap, to_input) {
        features.push(json!({
            "type": "Feature",
            "geometry": rectangle(x, y, x + side, y + side),
            "properties": {
                "objectType": "tile",
                "name": "window",
                "classification": if p >= DECISION_THRESHOLD {
                    json!({ "name": "Tumor", "color": [200, 0, 0] })
                } else {
                    json!({ "name": "Normal", "color": [0, 160, 0] })
                },
                "measurements": { "probability": p },
            },
        }));
    }
    for p in points {
        features.push(json!({
            "type": "Feature",
            "geometry": { "type": "Point", "coordinates": [p.x, p.y] },
            "properties": {
                "objectType": "annotation",
                "name": "tumour point",
                "classification": { "name": "Tumor", "color": [200, 0, 0] },
                "measurements": { "probability": p.probability },
            },
        }));
    }
    for window in evidence {
        for r in &window.regions {
            features.push(json!({
                "type": "Feature",
                "geometry": rectangle(r.x0, r.y0, r.x1, r.y1),
                "properties": {
                    "objectType": "annotation",
                    "name": "CELM region",
                    "classification": { "name": "CELM evidence", "color": [0, 200, 200] },
                    "measurements": {
                        "mean_evidence": r.mean_evidence,
                        "max_evidence": r.max_evidence,
                        "window_probability": window.probability,
                    },
                },
            }));
        }
    }
    json!({ "type": "FeatureCollection", "features": features })
}

/// The probability under each pixel of a `width` x `height` picture of the model-scale image
/// (`per_pixel` model-scale px per picture px): that of the nearest window centre, 0 on
/// background.
pub fn probability_map(heatmap: &Heatmap, width: usize, height: usize, per_pixel: f64) -> Map {
    let grid = heatmap.grid;
    let nearest = |v: usize, n: usize| {
        let centre = (v as f64 + 0.5) * per_pixel;
        let cell = (centre - (GLIMPSE / 2) as f64) / grid.stride as f64;
        (cell.round().max(0.0) as usize).min(n - 1)
    };
    let data = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .map(|(x, y)| {
            heatmap
                .get(nearest(x, grid.cols), nearest(y, grid.rows))
                .unwrap_or(0.0)
        })
        .collect();
    Map::new(width, height, data)
}

/// One pixel per window in the colour map (background windows at 0).
pub fn heatmap_picture(heatmap: &Heatmap) -> RgbImage {
    let grid = heatmap.grid;
    let cells = Map::new(
        grid.cols,
        grid.rows,
        heatmap
            .probabilities
            .iter()
            .map(|p| p.unwrap_or(0.0))
            .collect(),
    );
    colormap(&cells)
}

/// The heatmap over `thumbnail`, a copy of the `model_width`-px wide model-scale image.
pub fn overlay_picture(thumbnail: &RgbImage, model_width: usize, heatmap: &Heatmap) -> RgbImage {
    let (width, height) = (thumbnail.width() as usize, thumbnail.height() as usize);
    let per_pixel = model_width as f64 / width as f64;
    let map = probability_map(heatmap, width, height, per_pixel);
    overlay(thumbnail, &map, OVERLAY_OPACITY)
}

/// The tissue mask, one pixel per cell: white where tissue is.
pub fn tissue_picture(tissue: &TissueMask) -> GrayImage {
    GrayImage::from_fn(tissue.cols as u32, tissue.rows as u32, |c, r| {
        image::Luma([if tissue.data[r as usize * tissue.cols + c as usize] {
            255
        } else {
            0
        }])
    })
}
