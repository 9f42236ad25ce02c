//! Lesions: connected regions of the probability map, measured in millimetres and graded the way
//! nodal deposits are staged (isolated tumour cells, micrometastasis, macrometastasis).
//!
//! A window stands for the `stride` x `stride` cell around its centre, so a lesion's outline is
//! a union of cells and its size is only as exact as the grid: one stride at the model's scale,
//! about 31 µm at the default stride of 32.

use serde::{Deserialize, Serialize};

use crate::explain::regions::{Mask, label_components};
use crate::network::model::GLIMPSE;
use crate::slide::grid::WindowGrid;
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
    pub const ALL: [Category; 4] = [
        Category::Negative,
        Category::Itc,
        Category::Micro,
        Category::Macro,
    ];

    /// The name in results (`itc`).
    pub fn name(self) -> &'static str {
        match self {
            Category::Negative => "negative",
            Category::Itc => "itc",
            Category::Micro => "micro",
            Category::Macro => "macro",
        }
    }

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

    /// The category in words.
    pub fn describe(self) -> &'static str {
        match self {
            Category::Negative => "negative",
            Category::Itc => "isolated tumour cells",
            Category::Micro => "micrometastasis",
            Category::Macro => "macrometastasis",
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
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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
    /// The windows (`(col, row)` on the heatmap's grid) that make up the lesion.
    #[serde(skip)]
    pub cells: Vec<(usize, usize)>,
}

impl Lesion {
    /// The outline of the lesion's cells as GeoJSON MultiPolygon coordinates in the input's
    /// pixels: one polygon per 4-connected piece (cells touching at a corner only are separate
    /// pieces), its outer ring first and then its holes; outer rings run clockwise on screen.
    pub fn outline(&self, grid: &WindowGrid, scale: &ModelScale) -> Vec<Vec<Vec<[f64; 2]>>> {
        // Cells are centred on their windows' centres.
        let offset = (GLIMPSE as f64 - grid.stride as f64) / 2.0;
        let to_input = |(x, y): (i64, i64)| {
            [
                scale.to_input(x as f64 * grid.stride as f64 + offset),
                scale.to_input(y as f64 * grid.stride as f64 + offset),
            ]
        };
        let (outer, holes): (Vec<_>, Vec<_>) = cell_rings(&self.cells)
            .into_iter()
            .partition(|ring| twice_signed_area(ring) > 0);
        let mut polygons: Vec<Vec<Vec<(i64, i64)>>> = outer.into_iter().map(|r| vec![r]).collect();
        for hole in holes {
            // A hole lies inside exactly one outer ring; its corners are never outside it.
            let probe = (hole[0].0 as f64 + 0.5, hole[0].1 as f64 + 0.25);
            if let Some(polygon) = polygons.iter_mut().find(|p| contains(&p[0], probe)) {
                polygon.push(hole);
            }
        }
        polygons
            .into_iter()
            .map(|rings| {
                rings
                    .into_iter()
                    .map(|ring| {
                        let mut points: Vec<[f64; 2]> = ring.iter().map(|&p| to_input(p)).collect();
                        points.push(points[0]);
                        points
                    })
                    .collect()
            })
            .collect()
    }
}

/// The closed boundary rings of a union of unit cells, as corner coordinates without the closing
/// repeat and without collinear corners. Every boundary edge runs with its cell on the right
/// (y grows downwards), so outer rings have a positive [`twice_signed_area`] and holes a
/// negative one; at a corner where two cells touch diagonally the walk turns right, which keeps
/// them apart.
fn cell_rings(cells: &[(usize, usize)]) -> Vec<Vec<(i64, i64)>> {
    use std::collections::{BTreeMap, HashSet};
    let set: HashSet<(i64, i64)> = cells.iter().map(|&(c, r)| (c as i64, r as i64)).collect();
    // Directed edges from each corner.
    let mut edges: BTreeMap<(i64, i64), Vec<(i64, i64)>> = BTreeMap::new();
    for &(c, r) in &set {
        let sides = [
            ((0, -1), (c, r), (c + 1, r)),
            ((1, 0), (c + 1, r), (c + 1, r + 1)),
            ((0, 1), (c + 1, r + 1), (c, r + 1)),
            ((-1, 0), (c, r + 1), (c, r)),
        ];
        for ((dc, dr), from, to) in sides {
            if !set.contains(&(c + dc, r + dr)) {
                edges.entry(from).or_default().push(to);
            }
        }
    }
    let mut rings = Vec::new();
    while let Some((&start, _)) = edges.iter().find(|(_, to)| !to.is_empty()) {
        let mut ring = vec![start];
        let mut previous = start;
        let mut at = edges
            .get_mut(&start)
            .expect("found above")
            .pop()
            .expect("not empty");
        while at != start {
            let heading = (at.0 - previous.0, at.1 - previous.1);
            let choices = edges
                .get_mut(&at)
                .expect("boundary edges form closed rings");
            // Right turn first, then straight on, then left (y grows downwards).
            let rank = |to: &(i64, i64)| {
                let turn = (to.0 - at.0, to.1 - at.1);
                match heading.0 * turn.1 - heading.1 * turn.0 {
                    1 => 0,
                    0 => 1,
                    _ => 2,
                }
            };
            let pick = (0..choices.len())
                .min_by_key(|&i| rank(&choices[i]))
                .expect("a boundary corner has an edge out");
            let next = choices.swap_remove(pick);
            ring.push(at);
            previous = at;
            at = next;
        }
        edges.retain(|_, to| !to.is_empty());
        rings.push(without_collinear(ring));
    }
    rings
}

/// `ring` without the corners where it goes straight on.
fn without_collinear(ring: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    let n = ring.len();
    (0..n)
        .filter(|&i| {
            let (a, b, c) = (ring[(i + n - 1) % n], ring[i], ring[(i + 1) % n]);
            (b.0 - a.0) * (c.1 - b.1) - (b.1 - a.1) * (c.0 - b.0) != 0
        })
        .map(|i| ring[i])
        .collect()
}

/// Twice the shoelace area of a ring: positive when it runs clockwise on screen (y down).
fn twice_signed_area(ring: &[(i64, i64)]) -> i64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum()
}

/// Whether `point` lies inside `ring` (even-odd rule).
fn contains(ring: &[(i64, i64)], point: (f64, f64)) -> bool {
    let n = ring.len();
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        let (ax, ay, bx, by) = (a.0 as f64, a.1 as f64, b.0 as f64, b.1 as f64);
        if (ay > point.1) != (by > point.1) && point.0 < ax + (point.1 - ay) / (by - ay) * (bx - ax)
        {
            inside = !inside;
        }
    }
    inside
}

/// The lesions of `heatmap`, largest first. `scale` maps its model-scale pixels onto the input,
/// whose full-resolution pixels are `mpp` µm wide.
///
/// Hysteresis as connected components: the 8-connected regions of windows at `grow` or above
/// that hold a window at `seed` or above.
pub fn find_lesions(
    heatmap: &Heatmap,
    hysteresis: Hysteresis,
    scale: &ModelScale,
    mpp: f64,
) -> Vec<Lesion> {
    let grid = heatmap.grid;
    let cell_mm = grid.stride as f64 * scale.to_input(1.0) * mpp / 1000.0;
    let grown = Mask {
        width: grid.cols,
        height: grid.rows,
        data: heatmap
            .probabilities
            .iter()
            .map(|p| p.is_some_and(|p| p >= hysteresis.grow))
            .collect(),
    };
    let labels = label_components(&grown);
    let mut cells = vec![Vec::new(); labels.count as usize];
    let mut seeded = vec![false; labels.count as usize];
    for (i, &label) in labels.data.iter().enumerate() {
        if let Some(k) = (label as usize).checked_sub(1) {
            cells[k].push((i % grid.cols, i / grid.cols));
            seeded[k] |= heatmap.probabilities[i].is_some_and(|p| p >= hysteresis.seed);
        }
    }
    let mut lesions: Vec<Lesion> = cells
        .iter()
        .zip(seeded)
        .filter(|(_, seeded)| *seeded)
        .map(|(cells, _)| measure(heatmap, cells, cell_mm, scale))
        .collect();
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
    let diameter_mm = cells_diameter(cells) * cell_mm;
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
        cells: cells.to_vec(),
    }
}

/// The longest distance across a union of unit cells (`(col, row)`), in cells: between two of
/// their corners.
pub fn cells_diameter(cells: &[(usize, usize)]) -> f64 {
    let corners: Vec<(i64, i64)> = cells
        .iter()
        .flat_map(|&(c, r)| {
            let (c, r) = (c as i64, r as i64);
            [(c, r), (c + 1, r), (c, r + 1), (c + 1, r + 1)]
        })
        .collect();
    (farthest_pair_squared(&corners) as f64).sqrt()
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
    use crate::slide::scale::MODEL_MPP;

    const HYSTERESIS: Hysteresis = Hysteresis {
        seed: 0.9,
        grow: 0.5,
    };

    #[test]
    fn category_names_are_the_serialised_names() {
        for category in Category::ALL {
            assert_eq!(serde_json::to_value(category).unwrap(), category.name());
        }
    }

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

    #[test]
    fn outlines_follow_the_cells_with_holes_and_diagonal_pieces() {
        // A ring of eight cells around an empty one, and a cell touching it at a corner only.
        let mut cells: Vec<(usize, usize)> = (0..3)
            .flat_map(|r| (0..3).map(move |c| (c, r)))
            .filter(|&c| c != (1, 1))
            .collect();
        cells.push((3, 3));
        let rings = cell_rings(&cells);
        let mut areas: Vec<i64> = rings.iter().map(|r| twice_signed_area(r)).collect();
        areas.sort_unstable();
        // The hole runs the other way; the square's outer ring has four corners.
        assert_eq!(areas, vec![-2, 2, 18]);
        let lesion = Lesion {
            id: 1,
            category: Category::Itc,
            diameter_mm: 0.0,
            area_mm2: 0.0,
            peak: Point {
                x: 0.0,
                y: 0.0,
                probability: 1.0,
            },
            mean_probability: 1.0,
            windows: cells.len(),
            cells,
        };
        let grid = WindowGrid {
            stride: 32,
            cols: 4,
            rows: 4,
        };
        let polygons = lesion.outline(&grid, &ModelScale::NONE);
        assert_eq!(polygons.len(), 2, "{polygons:?}");
        let ring = polygons
            .iter()
            .find(|p| p.len() == 2)
            .expect("one polygon has a hole");
        // Cells are centred on window centres: the first cell spans 32..64 model px.
        assert_eq!(ring[0].len(), 5, "four corners and the closing repeat");
        assert!(ring[0].contains(&[32.0, 32.0]) && ring[0].contains(&[128.0, 128.0]));
        assert!(ring[1].contains(&[64.0, 64.0]) && ring[1].contains(&[96.0, 96.0]));
        let single = polygons.iter().find(|p| p.len() == 1).unwrap();
        assert!(single[0].contains(&[128.0, 128.0]) && single[0].contains(&[160.0, 160.0]));
    }
}
