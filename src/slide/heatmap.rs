//! The probability of every window, and what the paper's slide pipeline makes of it: the slide
//! score (the highest window) and tumour points by non-maximum suppression.

use serde::{Deserialize, Serialize};

use crate::network::classifier::DECISION_THRESHOLD;
use crate::network::model::GLIMPSE;
use crate::slide::grid::WindowGrid;

/// The probability of every window on a grid; `None` where the window's centre is background.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    pub grid: WindowGrid,
    pub probabilities: Vec<Option<f32>>,
}

/// Ways to sum a heatmap up in one slide score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SlideScores {
    /// The highest window probability: the paper's slide score.
    pub max: f32,
    /// The mean of the five highest: one stray window weighs less.
    pub top5_mean: f32,
    /// The share of scored windows called metastatic: how much of the tissue.
    pub tumour_share: f32,
}

impl SlideScores {
    /// The scores' names, in the order of [`SlideScores::values`].
    pub const NAMES: [&'static str; 3] = ["max", "top5_mean", "tumour_share"];

    pub fn values(&self) -> [f32; 3] {
        [self.max, self.top5_mean, self.tumour_share]
    }
}

/// A local maximum of the heatmap, in model-scale pixels (a window centre).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub probability: f32,
}

impl Heatmap {
    /// Windows scored (in tissue).
    pub fn scored(&self) -> usize {
        self.probabilities.iter().flatten().count()
    }

    /// The probability of window `(col, row)`.
    pub fn get(&self, col: usize, row: usize) -> Option<f32> {
        self.probabilities[self.grid.index(col, row)]
    }

    /// The slide score: the highest window probability (`None` without tissue).
    pub fn slide_score(&self) -> Option<f32> {
        self.probabilities
            .iter()
            .flatten()
            .copied()
            .reduce(f32::max)
    }

    /// Every slide score this crate knows, for comparing them; zeros without tissue.
    pub fn slide_scores(&self) -> SlideScores {
        let mut p: Vec<f32> = self.probabilities.iter().flatten().copied().collect();
        p.sort_by(|a, b| b.total_cmp(a));
        let top = &p[..p.len().min(5)];
        SlideScores {
            max: p.first().copied().unwrap_or(0.0),
            top5_mean: top.iter().sum::<f32>() / top.len().max(1) as f32,
            tumour_share: p.iter().filter(|&&v| v >= DECISION_THRESHOLD).count() as f32
                / p.len().max(1) as f32,
        }
    }

    /// Tumour points by non-maximum suppression: windows at or above `min_probability`, taken
    /// from the most probable down, each kept unless a kept point lies within `radius`
    /// model-scale pixels.
    pub fn points(&self, radius: f64, min_probability: f32) -> Vec<Point> {
        let mut candidates: Vec<Point> = (0..self.grid.rows)
            .flat_map(|r| (0..self.grid.cols).map(move |c| (c, r)))
            .filter_map(|(c, r)| {
                let p = self.get(c, r)?;
                let (x, y) = self.grid.centre(c, r);
                (p >= min_probability).then_some(Point {
                    x: x as f64,
                    y: y as f64,
                    probability: p,
                })
            })
            .collect();
        candidates.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let mut kept: Vec<Point> = Vec::new();
        for candidate in candidates {
            let near = |k: &Point| (k.x - candidate.x).hypot(k.y - candidate.y) < radius;
            if !kept.iter().any(near) {
                kept.push(candidate);
            }
        }
        kept
    }

    /// Default suppression: points closer than one window are the same finding.
    pub fn tumour_points(&self) -> Vec<Point> {
        self.points(GLIMPSE as f64, DECISION_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppression_keeps_one_point_per_peak() {
        // 5x1 windows at stride 16: two peaks (columns 1 and 4) and a shoulder next to the first.
        let heatmap = Heatmap {
            grid: WindowGrid {
                stride: 16,
                cols: 5,
                rows: 1,
            },
            probabilities: vec![Some(0.2), Some(0.9), Some(0.8), None, Some(0.7)],
        };
        let points = heatmap.points(40.0, 0.5);
        let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
        // Column 2 (x = 80) is 16 px from the peak at x = 64: suppressed. Column 4 (x = 112) is
        // 48 px away: kept.
        assert_eq!(xs, vec![64.0, 112.0]);
        assert_eq!(heatmap.slide_score(), Some(0.9));
        let scores = heatmap.slide_scores();
        assert_eq!(scores.max, 0.9);
        assert!((scores.top5_mean - (0.9 + 0.8 + 0.7 + 0.2) / 4.0).abs() < 1e-6);
        assert_eq!(scores.tumour_share, 0.75);
        assert_eq!(heatmap.scored(), 4);
        assert!(heatmap.points(40.0, 0.95).is_empty());
    }
}
