//! What an analysed image is written as, the same natively and in the page: the summary, the
//! window table (CSV), the GeoJSON QuPath imports, and the pictures. Coordinates are the
//! input's full-resolution pixels; a [`ModelScale`] maps model-scale pixels into them.

use image::{GrayImage, RgbImage};
use serde::Serialize;
use serde_json::{Value, json};

use crate::explain::Map;
use crate::explain::render::{OVERLAY_OPACITY, colormap, overlay};
use crate::network::classifier::{DECISION_THRESHOLD, Tta};
use crate::network::model::GLIMPSE;
use crate::slide::evidence::ExplainedWindow;
use crate::slide::heatmap::{Heatmap, Point, SlideScores};
use crate::slide::lesions::{Category, Lesion};
use crate::slide::scale::{ModelScale, MppSource};
use crate::slide::scan::Mode;
use crate::slide::tissue::TissueMask;

/// What an analysis found; coordinates are full-resolution pixels of the input.
#[derive(Clone, Debug, Serialize)]
pub struct HeatmapReport {
    pub file: String,
    pub width: u32,
    pub height: u32,
    /// The file's format and, for slides, its compression ("Aperio SVS, Aperio JPEG 2000
    /// (33005)").
    pub format: String,
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
    /// The calibrated probability that the input holds metastasis, from the slide model on
    /// features of the heatmap and its lesions; absent without tissue.
    pub slide_probability: Option<f64>,
    /// `negative` below the slide model's threshold, otherwise the largest lesion's category.
    pub slide_category: Category,
    /// Lesions, largest first; sizes are only as exact as the window grid (one stride at the
    /// model's scale).
    pub lesions: Vec<Lesion>,
    pub points: Vec<Point>,
    /// CELM of the top tumour points' windows and of requested ones.
    pub evidence: Vec<ExplainedWindow>,
    pub mode: Mode,
    /// Test-time augmentation of the window scores.
    pub tta: Tta,
    /// The work of scoring the windows, and its time and memory where measured.
    pub scoring: Scoring,
    /// Files written, where the analysis wrote any.
    pub files: Vec<String>,
}

/// The work of scoring an image's windows: what was computed, and how long it took and how much
/// memory it held where the caller measured them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Scoring {
    /// Tiles of the dense pass computed (none when scoring exactly).
    pub tiles: usize,
    /// Largest tile side of the dense pass, model-scale px (none when scoring exactly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tile: Option<usize>,
    /// Model-scale pixels the network computed: the dense tiles with their context, or
    /// 96 x 96 px per window scored exactly.
    pub pixels: u64,
    /// Seconds spent scoring the windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Windows scored per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_per_second: Option<f64>,
    /// Peak resident memory of the process so far, MB, where the platform reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_mb: Option<f64>,
}

/// `points` (model-scale px) in the input's pixels.
pub fn points_in_input(points: &[Point], scale: &ModelScale) -> Vec<Point> {
    points
        .iter()
        .map(|p| Point {
            x: scale.to_input(p.x),
            y: scale.to_input(p.y),
            ..*p
        })
        .collect()
}

/// Top-left corners (input pixels) and probabilities of the scored windows, row by row.
pub fn scored_windows(heatmap: &Heatmap, scale: &ModelScale) -> Vec<(f64, f64, f32)> {
    let grid = heatmap.grid;
    (0..grid.rows)
        .flat_map(|row| (0..grid.cols).map(move |col| (col, row)))
        .filter_map(|(col, row)| {
            let p = heatmap.get(col, row)?;
            let (x, y) = grid.origin(col, row);
            Some((scale.to_input(x as f64), scale.to_input(y as f64), p))
        })
        .collect()
}

/// The window table: `x,y,width,height,probability` per scored window, input pixels.
pub fn tiles_csv(heatmap: &Heatmap, scale: &ModelScale) -> String {
    let side = scale.to_input(GLIMPSE as f64);
    let mut csv = String::from("x,y,width,height,probability\n");
    for (x, y, p) in scored_windows(heatmap, scale) {
        csv.push_str(&format!("{x:.1},{y:.1},{side:.1},{side:.1},{p:.6}\n"));
    }
    csv
}

/// Everything for QuPath in input pixels, in the form QuPath's GeoJSON reader takes (v0.4 and
/// later: `objectType`, `classification` with `name` and an RGB `color`, `measurements` as an
/// object): the scored windows as tiles classified by the decision threshold with their
/// probability, the lesions' outlines classified by category with their measurements, the
/// tumour points (already in input pixels), and the bounding boxes of the explained windows'
/// CELM regions.
pub fn geojson(
    heatmap: &Heatmap,
    lesions: &[Lesion],
    points: &[Point],
    evidence: &[ExplainedWindow],
    scale: &ModelScale,
) -> Value {
    let side = scale.to_input(GLIMPSE as f64);
    let rectangle = |x0: f64, y0: f64, x1: f64, y1: f64| {
        json!({
            "type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
        })
    };
    let mut features = Vec::new();
    for (x, y, p) in scored_windows(heatmap, scale) {
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
    for lesion in lesions {
        let (name, color) = match lesion.category {
            Category::Macro => ("Macrometastasis", [150, 0, 150]),
            Category::Micro => ("Micrometastasis", [230, 100, 0]),
            _ => ("Isolated tumour cells", [230, 180, 0]),
        };
        features.push(json!({
            "type": "Feature",
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": lesion.outline(&heatmap.grid, scale),
            },
            "properties": {
                "objectType": "annotation",
                "name": format!("lesion {}", lesion.id),
                "classification": { "name": name, "color": color },
                "measurements": {
                    "diameter_mm": lesion.diameter_mm,
                    "area_mm2": lesion.area_mm2,
                    "peak_probability": lesion.peak.probability,
                    "mean_probability": lesion.mean_probability,
                    "windows": lesion.windows,
                },
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
