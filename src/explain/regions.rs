//! Evidence regions: threshold the CELM, smooth the mask, label its connected components.

use serde::{Deserialize, Serialize};

use super::maps::Map;
use super::params::CelmParams;
use crate::error::{CelnetError, Result};

/// A binary mask, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub data: Vec<bool>,
}

impl Mask {
    /// Pixels of `map` at or above `threshold`.
    pub fn threshold(map: &Map, threshold: f32) -> Mask {
        Mask {
            width: map.width,
            height: map.height,
            data: map.data.iter().map(|&v| v >= threshold).collect(),
        }
    }

    /// Boundary-smoothed mask: the mask blurred with a Gaussian of `sigma` px and
    /// re-thresholded at one half. Removes specks and fills pinholes narrower than about
    /// `sigma`; larger shapes keep their extent.
    pub fn smoothed(&self, sigma: f32) -> Mask {
        let as_map = Map::new(
            self.width,
            self.height,
            self.data.iter().map(|&b| f32::from(u8::from(b))).collect(),
        );
        Mask::threshold(&as_map.gaussian_blurred(sigma), 0.5)
    }

    /// Checks that this mask (the truth for `name`) covers an image of `width` x `height` px.
    pub fn ensure_covers(&self, name: &str, width: usize, height: usize) -> Result<()> {
        if (self.width, self.height) == (width, height) {
            Ok(())
        } else {
            Err(CelnetError::MaskSize {
                name: name.to_string(),
                mask: (self.width, self.height),
                image: (width, height),
            })
        }
    }
}

/// The region mask of any evidence-like map (thresholded at `params.threshold`, smoothed with
/// `params.mask_sigma`) and its connected components.
pub fn region_mask(map: &Map, params: &CelmParams) -> (Mask, Labels) {
    let mask = Mask::threshold(map, params.threshold).smoothed(params.mask_sigma);
    let labels = label_components(&mask);
    (mask, labels)
}

/// Axis-aligned bounding box in pixels; `x1`/`y1` are exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

/// One connected evidence region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// 1-based label, as in [`Labels`].
    pub label: u32,
    /// Pixels in the region.
    pub area: usize,
    pub bbox: BoundingBox,
    /// Mean of the evidence map over the region.
    pub mean_evidence: f32,
    /// Maximum of the evidence map over the region.
    pub max_evidence: f32,
}

/// Connected-component labels: 0 for background, `1..=n` for the regions.
#[derive(Clone, Debug, PartialEq)]
pub struct Labels {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u32>,
    pub count: u32,
}

/// 8-connected component labelling by flood fill (iterative, so large regions cannot
/// overflow the stack).
pub fn label_components(mask: &Mask) -> Labels {
    let (w, h) = (mask.width, mask.height);
    let mut labels = vec![0u32; w * h];
    let mut count = 0;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask.data[start] || labels[start] != 0 {
            continue;
        }
        count += 1;
        labels[start] = count;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if mask.data[j] && labels[j] == 0 {
                        labels[j] = count;
                        stack.push(j);
                    }
                }
            }
        }
    }
    Labels {
        width: w,
        height: h,
        data: labels,
        count,
    }
}

/// Summaries of the labelled regions at least `min_area` pixels large, largest first.
pub fn describe_regions(labels: &Labels, evidence: &Map, min_area: usize) -> Vec<Region> {
    let n = labels.count as usize;
    let mut regions: Vec<Region> = (1..=n)
        .map(|label| Region {
            label: label as u32,
            area: 0,
            bbox: BoundingBox {
                x0: usize::MAX,
                y0: usize::MAX,
                x1: 0,
                y1: 0,
            },
            mean_evidence: 0.0,
            max_evidence: f32::NEG_INFINITY,
        })
        .collect();
    for (i, &label) in labels.data.iter().enumerate() {
        if label == 0 {
            continue;
        }
        let (x, y) = (i % labels.width, i / labels.width);
        let value = evidence.data[i];
        let r = &mut regions[label as usize - 1];
        r.area += 1;
        r.bbox.x0 = r.bbox.x0.min(x);
        r.bbox.y0 = r.bbox.y0.min(y);
        r.bbox.x1 = r.bbox.x1.max(x + 1);
        r.bbox.y1 = r.bbox.y1.max(y + 1);
        r.mean_evidence += value;
        r.max_evidence = r.max_evidence.max(value);
    }
    regions.retain(|r| r.area >= min_area.max(1));
    for r in &mut regions {
        r.mean_evidence /= r.area as f32;
    }
    regions.sort_by(|a, b| b.area.cmp(&a.area).then(a.label.cmp(&b.label)));
    regions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_from(rows: &[&str]) -> Mask {
        let width = rows[0].len();
        Mask {
            width,
            height: rows.len(),
            data: rows
                .iter()
                .flat_map(|r| r.chars().map(|c| c == '#'))
                .collect(),
        }
    }

    #[test]
    fn diagonal_pixels_are_one_component() {
        let labels = label_components(&mask_from(&["#..", ".#.", "..#"]));
        assert_eq!(labels.count, 1);
    }

    #[test]
    fn separate_blobs_are_separate_regions() {
        let mask = mask_from(&["##...", "##...", ".....", "...##"]);
        let labels = label_components(&mask);
        assert_eq!(labels.count, 2);
        let evidence = Map::new(5, 4, (0..20).map(|i| i as f32).collect());
        let regions = describe_regions(&labels, &evidence, 1);
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].area, 4);
        assert_eq!(
            regions[0].bbox,
            BoundingBox {
                x0: 0,
                y0: 0,
                x1: 2,
                y1: 2
            }
        );
        // Pixels 0, 1, 5, 6.
        assert_eq!(regions[0].mean_evidence, 3.0);
        assert_eq!(regions[0].max_evidence, 6.0);
        assert_eq!(regions[1].area, 2);
        assert_eq!(regions[1].mean_evidence, 18.5);
        // A minimum area drops the small one.
        assert_eq!(describe_regions(&labels, &evidence, 3).len(), 1);
    }

    #[test]
    fn smoothing_removes_a_speck_and_keeps_a_block() {
        let mut rows = vec!["................"; 16];
        rows[2] = "..#.............";
        for row in rows.iter_mut().skip(6).take(8) {
            *row = "......########..";
        }
        let smoothed = mask_from(&rows).smoothed(1.0);
        assert!(!smoothed.data[2 * 16 + 2], "speck survived");
        assert!(smoothed.data[9 * 16 + 9], "block centre lost");
        assert_eq!(label_components(&smoothed).count, 1);
    }
}
