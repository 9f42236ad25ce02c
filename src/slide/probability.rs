//! The slide probability: a small logistic model on features of the heatmap and its lesions,
//! as the Camelyon16 winners turned heatmaps into slide scores, in place of the maximum alone
//! (which nearly every normal slide drives high when a window in a few hundred is a false
//! alarm).
//!
//! The shipped coefficients (`weights/celnet-pcam.slide.json`) belong to the shipped network
//! weights: they were fitted on synthetic slides built from the training split and chosen and
//! calibrated on slides from the validation split's selection half (`celnet slide-fit`).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};
use crate::slide::heatmap::Heatmap;
use crate::slide::lesions::{Category, Hysteresis, Lesion, find_lesions};
use crate::slide::scale::ModelScale;

/// Number of slide features.
pub const FEATURE_COUNT: usize = 8;

/// The features' names, in the order of [`SlideFeatures::values`].
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    "logit_max",
    "logit_top5_mean",
    "tumour_share",
    "log_lesions",
    "largest_diameter_mm",
    "largest_sqrt_area_mm",
    "largest_mean_probability",
    "total_sqrt_area_mm",
];

/// What the slide model sees of a heatmap and its lesions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SlideFeatures {
    /// The highest window probability, as a logit (clamped to ±9.2): the maximum saturates near
    /// 1, where normal and tumour slides still differ.
    pub logit_max: f64,
    /// The mean of the five highest windows, as a logit.
    pub logit_top5_mean: f64,
    /// The share of scored windows at 0.5 or more.
    pub tumour_share: f64,
    /// ln(1 + number of lesions).
    pub log_lesions: f64,
    /// The largest lesion's longest diameter, mm (0 without lesions).
    pub largest_diameter_mm: f64,
    /// The square root of the largest lesion's area (mm), a diameter of the same scale.
    pub largest_sqrt_area_mm: f64,
    /// The largest lesion's mean window probability.
    pub largest_mean_probability: f64,
    /// The square root of all lesions' area together (mm).
    pub total_sqrt_area_mm: f64,
}

/// ln(p / (1 - p)) with `p` kept within 1e-4 of 0 and 1.
fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

impl SlideFeatures {
    /// The features of `heatmap` and its `lesions` (largest first, as [`find_lesions`] gives
    /// them).
    ///
    /// [`find_lesions`]: crate::slide::lesions::find_lesions
    pub fn of(heatmap: &Heatmap, lesions: &[Lesion]) -> SlideFeatures {
        let scores = heatmap.slide_scores();
        let largest = lesions.first();
        SlideFeatures {
            logit_max: logit(f64::from(scores.max)),
            logit_top5_mean: logit(f64::from(scores.top5_mean)),
            tumour_share: f64::from(scores.tumour_share),
            log_lesions: (lesions.len() as f64).ln_1p(),
            largest_diameter_mm: largest.map_or(0.0, |l| l.diameter_mm),
            largest_sqrt_area_mm: largest.map_or(0.0, |l| l.area_mm2.sqrt()),
            largest_mean_probability: largest.map_or(0.0, |l| f64::from(l.mean_probability)),
            total_sqrt_area_mm: lesions.iter().map(|l| l.area_mm2).sum::<f64>().sqrt(),
        }
    }

    /// The features in the order of [`FEATURE_NAMES`].
    pub fn values(&self) -> [f64; FEATURE_COUNT] {
        [
            self.logit_max,
            self.logit_top5_mean,
            self.tumour_share,
            self.log_lesions,
            self.largest_diameter_mm,
            self.largest_sqrt_area_mm,
            self.largest_mean_probability,
            self.total_sqrt_area_mm,
        ]
    }
}

/// Platt scaling of the model's logit, fitted on slides it was not fitted on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

/// A fitted slide model: lesion thresholds, standardisation, logistic coefficients and their
/// calibration, with where each came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlideModel {
    /// The network weights the model was fitted for.
    pub weights: String,
    /// How lesions are found.
    pub hysteresis: Hysteresis,
    /// [`FEATURE_NAMES`], to check the file against this build.
    pub features: Vec<String>,
    /// Features are standardised as `(value - mean) / scale` before the coefficients apply.
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    /// Applied to the logit: `probability = σ(a · logit + b)`.
    pub calibration: Platt,
    /// A slide is called metastatic at this probability or above.
    pub threshold: f64,
    /// The L2 penalty the coefficients were fitted with.
    pub l2: f64,
    /// The slides the coefficients were fitted on.
    pub fitted_on: String,
    /// The slides the thresholds, penalty and calibration were chosen on.
    pub chosen_on: String,
}

/// The shipped slide model's file.
const SHIPPED: &str = include_str!("../../weights/celnet-pcam.slide.json");

impl SlideModel {
    /// The slide model that goes with the shipped weights.
    pub fn shipped() -> &'static SlideModel {
        static MODEL: OnceLock<SlideModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            SlideModel::from_json(SHIPPED).expect("the shipped slide model is checked by tests")
        })
    }

    /// Reads a slide model file, checking that its features are this build's.
    pub fn from_json(text: &str) -> Result<SlideModel> {
        let model: SlideModel = serde_json::from_str(text)
            .map_err(|e| CelnetError::InvalidParameter(format!("not a slide model: {e}")))?;
        let names: Vec<&str> = model.features.iter().map(String::as_str).collect();
        let lengths = [
            model.mean.len(),
            model.scale.len(),
            model.coefficients.len(),
        ];
        if names != FEATURE_NAMES || lengths.iter().any(|&n| n != FEATURE_COUNT) {
            return Err(CelnetError::InvalidParameter(format!(
                "the slide model's features are {names:?}, this version computes {FEATURE_NAMES:?}"
            )));
        }
        if model.scale.iter().any(|&s| !(s.is_finite() && s > 0.0)) {
            return Err(CelnetError::InvalidParameter(
                "the slide model's feature scales must be positive".into(),
            ));
        }
        Ok(model)
    }

    /// The model's uncalibrated logit for `features`.
    pub fn logit(&self, features: &SlideFeatures) -> f64 {
        let values = features.values();
        self.intercept
            + (0..FEATURE_COUNT)
                .map(|i| self.coefficients[i] * (values[i] - self.mean[i]) / self.scale[i])
                .sum::<f64>()
    }

    /// The calibrated probability that the slide holds metastasis.
    pub fn probability(&self, features: &SlideFeatures) -> f64 {
        sigmoid(self.calibration.a * self.logit(features) + self.calibration.b)
    }

    /// The slide's category: its largest lesion's when the probability reaches the threshold,
    /// otherwise negative (lesions then stay candidates).
    pub fn category(&self, probability: f64, lesions: &[Lesion]) -> Category {
        if probability >= self.threshold {
            Category::of_slide(lesions).max(Category::Itc)
        } else {
            Category::Negative
        }
    }
}

/// What the slide pipeline makes of a heatmap with a slide model: its lesions, their features,
/// the slide probability and the slide's category.
#[derive(Clone, Debug, PartialEq)]
pub struct SlideAnswer {
    pub lesions: Vec<Lesion>,
    pub features: SlideFeatures,
    /// `None` without scored windows.
    pub probability: Option<f64>,
    pub category: Category,
}

impl SlideAnswer {
    /// The answer for `heatmap`, whose model-scale pixels map onto the input by `scale`, the
    /// input's full-resolution pixels being `mpp` µm wide.
    pub fn of(heatmap: &Heatmap, scale: &ModelScale, mpp: f64, model: &SlideModel) -> SlideAnswer {
        let lesions = find_lesions(heatmap, model.hysteresis, scale, mpp);
        let features = SlideFeatures::of(heatmap, &lesions);
        let probability = (heatmap.scored() > 0).then(|| model.probability(&features));
        SlideAnswer {
            category: model.category(probability.unwrap_or(0.0), &lesions),
            lesions,
            features,
            probability,
        }
    }
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// A logistic regression fitted by Newton's method on the mean log loss plus
/// `l2 / 2 · |w|²` (the intercept is not penalised). Rows of `x` hold the features; `y` is 0 or
/// 1. Returns `(coefficients, intercept)`.
pub fn fit_logistic(x: &[Vec<f64>], y: &[u8], l2: f64) -> (Vec<f64>, f64) {
    let n = x.len().max(1) as f64;
    let k = x.first().map_or(0, Vec::len);
    let dim = k + 1;
    // Rows with a constant 1 for the intercept, the last parameter.
    let rows: Vec<Vec<f64>> = x
        .iter()
        .map(|r| r.iter().copied().chain([1.0]).collect())
        .collect();
    let mut w = vec![0.0; dim];
    for _ in 0..100 {
        let mut gradient = vec![0.0; dim];
        let mut hessian = vec![vec![0.0; dim]; dim];
        for (row, &label) in rows.iter().zip(y) {
            let p = sigmoid(row.iter().zip(&w).map(|(v, c)| v * c).sum());
            let weight = (p * (1.0 - p)).max(1e-12);
            for (a, &va) in row.iter().enumerate() {
                gradient[a] += (p - f64::from(label)) * va / n;
                for (h, &vb) in hessian[a].iter_mut().zip(row) {
                    *h += weight * va * vb / n;
                }
            }
        }
        for (j, wj) in w.iter().enumerate().take(k) {
            gradient[j] += l2 * wj;
            hessian[j][j] += l2;
        }
        hessian[k][k] += 1e-12;
        let step = solve(hessian, gradient);
        for (wj, sj) in w.iter_mut().zip(&step) {
            *wj -= sj;
        }
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-12 {
            break;
        }
    }
    let intercept = w.pop().unwrap_or(0.0);
    (w, intercept)
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting (`a` is small and
/// positive definite here).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .expect("col < n");
        a.swap(col, pivot);
        b.swap(col, pivot);
        for r in col + 1..n {
            let f = a[r][col] / a[col][col];
            let (top, bottom) = a.split_at_mut(r);
            for (v, &p) in bottom[0][col..].iter_mut().zip(&top[col][col..]) {
                *v -= f * p;
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::grid::WindowGrid;
    use crate::slide::heatmap::Point;

    fn penalised_loss(x: &[Vec<f64>], y: &[u8], l2: f64, w: &[f64], b: f64) -> f64 {
        let n = x.len() as f64;
        x.iter()
            .zip(y)
            .map(|(row, &label)| {
                let p = sigmoid(b + row.iter().zip(w).map(|(v, c)| v * c).sum::<f64>());
                -(if label == 1 { p.ln() } else { (1.0 - p).ln() })
            })
            .sum::<f64>()
            / n
            + l2 / 2.0 * w.iter().map(|c| c * c).sum::<f64>()
    }

    #[test]
    fn the_fit_minimises_the_penalised_loss() {
        // Overlapping classes on two features; every nudge of a parameter raises the loss.
        let x: Vec<Vec<f64>> = (0..40)
            .map(|i| {
                let t = i as f64 / 40.0;
                vec![(t * 7.0).sin() + t, (t * 13.0).cos()]
            })
            .collect();
        let y: Vec<u8> = (0..40).map(|i| u8::from(i % 3 != 0 && i > 10)).collect();
        let (w, b) = fit_logistic(&x, &y, 0.1);
        let best = penalised_loss(&x, &y, 0.1, &w, b);
        for j in 0..3 {
            for step in [-1e-4, 1e-4] {
                let mut w2 = w.clone();
                let mut b2 = b;
                if j < 2 {
                    w2[j] += step;
                } else {
                    b2 += step;
                }
                assert!(penalised_loss(&x, &y, 0.1, &w2, b2) > best, "{j} {step}");
            }
        }
        // Symmetric data give a zero intercept; a separable set stays finite under a penalty.
        let x: Vec<Vec<f64>> = [-2.0, -1.0, 1.0, 2.0].iter().map(|&v| vec![v]).collect();
        let (w, b) = fit_logistic(&x, &[0, 0, 1, 1], 0.01);
        assert!(b.abs() < 1e-9 && w[0] > 1.0 && w[0].is_finite());
    }

    fn lesion(diameter_mm: f64, area_mm2: f64, mean_probability: f32) -> Lesion {
        Lesion {
            id: 1,
            category: Category::of_diameter(diameter_mm),
            diameter_mm,
            area_mm2,
            peak: Point {
                x: 0.0,
                y: 0.0,
                probability: 0.99,
            },
            mean_probability,
            windows: 4,
            cells: Vec::new(),
        }
    }

    #[test]
    fn features_of_a_hand_made_map() {
        let heatmap = Heatmap {
            grid: WindowGrid {
                stride: 32,
                cols: 4,
                rows: 2,
            },
            probabilities: vec![
                Some(0.9),
                Some(0.2),
                Some(0.6),
                None,
                Some(0.1),
                Some(0.1),
                Some(0.5),
                Some(0.1),
            ],
        };
        let lesions = [lesion(0.5, 0.09, 0.7), lesion(0.1, 0.01, 0.6)];
        let f = SlideFeatures::of(&heatmap, &lesions);
        assert!((f.logit_max - (0.9f64 / 0.1).ln()).abs() < 1e-6);
        // The top five: 0.9, 0.6, 0.5, 0.2, 0.1.
        let top5 = (0.9 + 0.6 + 0.5 + 0.2 + 0.1) / 5.0f64;
        assert!((f.logit_top5_mean - (top5 / (1.0 - top5)).ln()).abs() < 1e-6);
        assert!((f.tumour_share - 3.0 / 7.0).abs() < 1e-6);
        assert!((f.log_lesions - 3f64.ln()).abs() < 1e-12);
        assert_eq!(f.largest_diameter_mm, 0.5);
        assert!((f.largest_sqrt_area_mm - 0.3).abs() < 1e-12);
        assert!((f.largest_mean_probability - 0.7).abs() < 1e-6);
        assert!((f.total_sqrt_area_mm - 0.1f64.sqrt()).abs() < 1e-12);
        let empty = SlideFeatures::of(&heatmap, &[]);
        assert_eq!((empty.log_lesions, empty.largest_diameter_mm), (0.0, 0.0));
    }

    #[test]
    fn the_shipped_model_loads_and_gives_its_probability() {
        let model = SlideModel::shipped();
        assert_eq!(model.features, FEATURE_NAMES);
        // The shipped slide model belongs to the shipped weights.
        assert_eq!(model.weights, crate::weights::DEFAULT_VERSION);
        assert!(model.hysteresis.seed >= model.hysteresis.grow);
        // At the features' means the logit is the intercept.
        let mean = &model.mean;
        let at_mean = SlideFeatures {
            logit_max: mean[0],
            logit_top5_mean: mean[1],
            tumour_share: mean[2],
            log_lesions: mean[3],
            largest_diameter_mm: mean[4],
            largest_sqrt_area_mm: mean[5],
            largest_mean_probability: mean[6],
            total_sqrt_area_mm: mean[7],
        };
        let expected = sigmoid(model.calibration.a * model.intercept + model.calibration.b);
        assert!((model.probability(&at_mean) - expected).abs() < 1e-12);
        // A field of confident windows is called metastatic; a quiet one is not.
        let grid = WindowGrid {
            stride: 32,
            cols: 30,
            rows: 30,
        };
        let quiet = Heatmap {
            grid,
            probabilities: vec![Some(0.02); 900],
        };
        let loud = Heatmap {
            grid,
            probabilities: vec![Some(0.999); 900],
        };
        let big = [lesion(2.5, 0.8, 0.99)];
        assert!(model.probability(&SlideFeatures::of(&quiet, &[])) < model.threshold);
        assert!(model.probability(&SlideFeatures::of(&loud, &big)) >= model.threshold);
        assert_eq!(model.category(0.0, &big), Category::Negative);
        assert_eq!(model.category(1.0, &big), Category::Macro);
        let mut wrong = serde_json::to_value(model).unwrap();
        wrong["features"][0] = "max".into();
        assert!(SlideModel::from_json(&wrong.to_string()).is_err());
    }
}
