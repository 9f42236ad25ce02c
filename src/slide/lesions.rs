//! Lesions: connected regions of the probability map, measured in millimetres and graded the way
//! nodal deposits are staged (isolated tumour cells, micrometastasis, macrometastasis).
//!
//! A window stands for the `stride` x `stride` cell around its centre, so a lesion's outline is
//! a union of cells and its size is only as exact as the grid: one stride at the model's scale,
//! about 31 µm at the default stride of 32.

use serde::Serialize;

use crate::slide::heatmap::{Heatmap, Point};
use crate::slide::scale::ModelScale;

/// Longest diameter up to which a deposit counts as isolated tumour cells, in mm.
pub const ITC_MAX_MM: f64 = 0.2;
/// Longest diameter up to which a deposit counts as a micrometastasis, in mm.
pub const MICRO_MAX_MM: f64 = 2.0;

/// A deposit's (or a slide's) category by its longest diameter, as in pN staging and the
/// Camelyon17 slide labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// No lesion.
    Negative,
    /// Isolated tumour cells: at most 0.2 mm.
    Itc,
    /// Micrometastasis: more than 0.2 mm, at most 2 mm.
    Micro,
    /// Macrometastasis: more than 2 mm.
    Macro,
}

impl Category {
    /// The category of a deposit whose longest diameter is `mm`.
    pub fn of_diameter(mm: f64) -> Category {
        if mm <= ITC_MAX_MM {
            Category::Itc
        } else if mm <= MICRO_MAX_MM {
            Category::Micro
        } else {
            Category::Macro
        }
    }

    /// A slide's category: that of its largest lesion, or negative without one.
    pub fn of_slide(lesions: &[Lesion]) -> Category {
        lesions
            .iter()
            .map(|l| l.category)
            .max()
            .unwrap_or(Category::Negative)
    }
}

/// Thresholds of hysteresis on window probabilities: a lesion holds at least one window at
/// `seed` or above and grows through the 8-connected windows at `grow` or above, so one
/// confident window brings in its less certain neighbours while lone middling windows are
/// not lesions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Hysteresis {
    pub seed: f32,
    pub grow: f32,
}

/// One lesion, measured in the input's micrometres and located in its full-resolution pixels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lesion {
    /// 1 for the largest (longest diameter), then in decreasing size.
    pub id: usize,
    pub category: Category,
    /// The longest distance across the lesion's cells, in mm.
    pub diameter_mm: f64,
    /// The lesion's cells' area, in mm².
    pub area_mm2: f64,
    /// The most probable window's centre (input pixels) and its probability.
    pub peak: Point,
    pub mean_probability: f32,
    pub windows: usize,
}

/// The lesions of `heatmap`, largest first. `scale` maps its model-scale pixels onto the input,
/// whose full-resolution pixels are `mpp` µm wide.
pub fn find_lesions(
    heatmap: &Heatmap,
    hysteresis: Hysteresis,
    scale: &ModelScale,
    mpp: f64,
) -> Vec<Lesion> {
    let grid = heatmap.grid;
    let mm_per_model_px = scale.to_input(1.0) * mpp / 1000.0;
    let cell_mm = grid.stride as f64 * mm_per_model_px;
    let at_least =
        |col: usize, row: usize, level: f32| heatmap.get(col, row).is_some_and(|p| p >= level);

    let mut taken = vec![false; grid.cols * grid.rows];
    let mut lesions = Vec::new();
    for row in 0..grid.rows {
        for col in 0..grid.cols {
            if taken[grid.index(col, row)] || !at_least(col, row, hysteresis.seed) {
                continue;
            }
            // Flood fill through windows at `grow` or above.
            taken[grid.index(col, row)] = true;
            let mut stack = vec![(col, row)];
            let mut cells = Vec::new();
            while let Some((c, r)) = stack.pop() {
                cells.push((c, r));
                for (nc, nr) in neighbours(c, r, grid.cols, grid.rows) {
                    let i = grid.index(nc, nr);
                    if !taken[i] && at_least(nc, nr, hysteresis.grow) {
                        taken[i] = true;
                        stack.push((nc, nr));
                    }
                }
            }
            lesions.push(measure(heatmap, &cells, cell_mm, scale));
        }
    }
    lesions.sort_by(|a, b| {
        b.diameter_mm
            .total_cmp(&a.diameter_mm)
            .then(b.peak.probability.total_cmp(&a.peak.probability))
    });
    for (i, lesion) in lesions.iter_mut().enumerate() {
        lesion.id = i + 1;
    }
    lesions
}

/// The up to eight cells around `(col, row)` on a `cols` x `rows` grid.
fn neighbours(
    col: usize,
    row: usize,
    cols: usize,
    rows: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let (col, row) = (col as isize, row as isize);
    (-1..=1)
        .flat_map(move |dr| (-1..=1).map(move |dc| (col + dc, row + dr)))
        .filter(move |&(c, r)| {
            (c, r) != (col, row) && c >= 0 && r >= 0 && c < cols as isize && r < rows as isize
        })
        .map(|(c, r)| (c as usize, r as usize))
}

/// A lesion's measurements from its cells (`(col, row)` of windows on `heatmap`'s grid).
fn measure(
    heatmap: &Heatmap,
    cells: &[(usize, usize)],
    cell_mm: f64,
    scale: &ModelScale,
) -> Lesion {
    let probabilities: Vec<f32> = cells
        .iter()
        .map(|&(c, r)| heatmap.get(c, r).unwrap_or(0.0))
        .collect();
    let (peak_index, &peak_probability) = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("a lesion holds its seed");
    let (x, y) = heatmap
        .grid
        .centre(cells[peak_index].0, cells[peak_index].1);
    // Corners of every cell in strides; cells are centred on their windows' centres, and the
    // common offset does not change distances.
    let corners: Vec<(i64, i64)> = cells
        .iter()
        .flat_map(|&(c, r)| {
            let (c, r) = (c as i64, r as i64);
            [(c, r), (c + 1, r), (c, r + 1), (c + 1, r + 1)]
        })
        .collect();
    let diameter_cells = (farthest_pair_squared(&corners) as f64).sqrt();
    let diameter_mm = diameter_cells * cell_mm;
    Lesion {
        id: 0,
        category: Category::of_diameter(diameter_mm),
        diameter_mm,
        area_mm2: cells.len() as f64 * cell_mm * cell_mm,
        peak: Point {
            x: scale.to_input(x as f64),
            y: scale.to_input(y as f64),
            probability: peak_probability,
        },
        mean_probability: probabilities.iter().sum::<f32>() / probabilities.len() as f32,
        windows: cells.len(),
    }
}

/// The largest squared distance between two of `points`: over the vertices of their convex
/// hull (Andrew's monotone chain), which is where the farthest pair lies.
fn farthest_pair_squared(points: &[(i64, i64)]) -> i64 {
    let mut sorted = points.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let cross = |o: (i64, i64), a: (i64, i64), b: (i64, i64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(i64, i64)> = Vec::with_capacity(2 * sorted.len());
    for pass in [sorted.clone(), sorted.iter().rev().copied().collect()] {
        let start = hull.len();
        for p in pass {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    let mut best = 0;
    for (i, a) in hull.iter().enumerate() {
        for b in &hull[i + 1..] {
            best = best.max((a.0 - b.0).pow(2) + (a.1 - b.1).pow(2));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::grid::WindowGrid;
    use crate::slide::scale::MODEL_MPP;

    const HYSTERESIS: Hysteresis = Hysteresis {
        seed: 0.9,
        grow: 0.5,
    };

    /// A heatmap from rows of probabilities (negative = background).
    fn map(stride: usize, rows: &[&[f32]]) -> Heatmap {
        Heatmap {
            grid: WindowGrid {
                stride,
                cols: rows[0].len(),
                rows: rows.len(),
            },
            probabilities: rows
                .iter()
                .flat_map(|r| r.iter().map(|&p| (p >= 0.0).then_some(p)))
                .collect(),
        }
    }

    #[test]
    fn hysteresis_grows_seeds_through_middling_windows_only() {
        let heatmap = map(
            32,
            &[
                &[0.6, 0.95, 0.6, 0.1, 0.7],
                &[0.1, 0.1, 0.1, 0.1, 0.8],
                &[0.1, 0.1, 0.1, 0.1, -1.0],
                &[0.6, 0.1, 0.1, 0.1, 0.99],
            ],
        );
        let lesions = find_lesions(&heatmap, HYSTERESIS, &ModelScale::NONE, MODEL_MPP);
        // The seed at (1, 0) grows to both 0.6 neighbours; (4, 0)-(4, 1) hold no seed and
        // (4, 3) is a seed cut off from them by background; (0, 3) holds no seed.
        let mut sizes: Vec<usize> = lesions.iter().map(|l| l.windows).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![1, 3]);
        assert_eq!(lesions[0].windows, 3, "largest first");
        assert_eq!(lesions[0].id, 1);
        assert_eq!(lesions[0].peak.probability, 0.95);
        assert_eq!((lesions[0].peak.x, lesions[0].peak.y), (32.0 + 48.0, 48.0));
        assert!((lesions[0].mean_probability - (0.6 + 0.95 + 0.6) / 3.0).abs() < 1e-6);
        assert_eq!(Category::of_slide(&lesions), Category::Itc);
        assert_eq!(Category::of_slide(&[]), Category::Negative);
    }

    #[test]
    fn sizes_are_those_of_the_cells_in_micrometres() {
        // A row of five windows at stride 32: 160 x 32 model pixels of 0.972 µm.
        let heatmap = map(32, &[&[0.95; 5]]);
        let lesion = &find_lesions(&heatmap, HYSTERESIS, &ModelScale::NONE, MODEL_MPP)[0];
        let um = 0.972;
        let expected = (160.0f64.powi(2) + 32.0f64.powi(2)).sqrt() * um / 1000.0;
        assert!((lesion.diameter_mm - expected).abs() < 1e-12, "{lesion:?}");
        assert!((lesion.area_mm2 - 5.0 * (32.0 * um / 1000.0).powi(2)).abs() < 1e-12);
        // An L: the farthest corners are those of the two arms' ends.
        let heatmap = map(
            16,
            &[&[0.95, 0.0, 0.0], &[0.95, 0.0, 0.0], &[0.95, 0.95, 0.95]],
        );
        let lesion = &find_lesions(&heatmap, HYSTERESIS, &ModelScale::NONE, 1.0)[0];
        assert!((lesion.diameter_mm - (48.0f64 * 2f64.sqrt()) / 1000.0).abs() < 1e-12);
        assert_eq!(lesion.windows, 5);
    }

    #[test]
    fn millimetres_do_not_depend_on_the_pixel_size() {
        let heatmap = map(32, &[&[0.5, 0.92, 0.7], &[0.0, 0.6, 0.97]]);
        // The same tissue scanned at 0.972 µm/px (scored as it is) and at 0.486 µm/px (read at
        // half size): model pixels map onto twice as many input pixels of half the width.
        let native = find_lesions(&heatmap, HYSTERESIS, &ModelScale::NONE, MODEL_MPP);
        let fine_scale = ModelScale {
            level: 0,
            downsample: 1.0,
            model_per_level: 0.5,
        };
        let fine = find_lesions(&heatmap, HYSTERESIS, &fine_scale, MODEL_MPP / 2.0);
        assert_eq!(native.len(), 1);
        assert_eq!(native.len(), fine.len());
        assert!((native[0].diameter_mm - fine[0].diameter_mm).abs() < 1e-12);
        assert!((native[0].area_mm2 - fine[0].area_mm2).abs() < 1e-15);
        assert_eq!(fine[0].peak.x, 2.0 * native[0].peak.x);
        // And through a pyramid level 4 times smaller, scaled up to the model's scale.
        let level = ModelScale {
            level: 2,
            downsample: 4.0,
            model_per_level: 2.0,
        };
        let pyramid = find_lesions(&heatmap, HYSTERESIS, &level, MODEL_MPP / 2.0);
        assert!((native[0].diameter_mm - pyramid[0].diameter_mm).abs() < 1e-12);
    }

    #[test]
    fn categories_change_just_past_0_2_and_2_mm() {
        assert_eq!(Category::of_diameter(0.0), Category::Itc);
        assert_eq!(Category::of_diameter(0.2), Category::Itc);
        assert_eq!(Category::of_diameter(0.2 + 1e-9), Category::Micro);
        assert_eq!(Category::of_diameter(2.0), Category::Micro);
        assert_eq!(Category::of_diameter(2.0 + 1e-9), Category::Macro);
        assert!(Category::Macro > Category::Micro && Category::Itc > Category::Negative);
    }

    #[test]
    fn hull_diameter_matches_brute_force() {
        let points: Vec<(i64, i64)> = (0..40)
            .map(|i: i64| ((i * 37) % 23 - 11, (i * 53) % 29 - 14))
            .collect();
        let brute = points
            .iter()
            .flat_map(|a| {
                points
                    .iter()
                    .map(move |b| (a.0 - b.0).pow(2) + (a.1 - b.1).pow(2))
            })
            .max()
            .unwrap();
        assert_eq!(farthest_pair_squared(&points), brute);
        assert_eq!(farthest_pair_squared(&[(3, 4)]), 0);
        assert_eq!(farthest_pair_squared(&[(0, 0), (1, 0), (2, 0)]), 4);
    }
}
