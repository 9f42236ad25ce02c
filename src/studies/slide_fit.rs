//! Fitting the slide model: lesion thresholds, logistic coefficients and their calibration.
//!
//! The coefficients are fitted on slides built from the training split only. Every choice (the
//! hysteresis thresholds, the L2 penalty) and the Platt calibration are made on slides from the
//! validation split's selection half, so that slides from its report half stay unseen: among
//! the candidates with at most [`MAX_FALSE_LESIONS`] lesions per normal slide, the one with the
//! best category accuracy plus slide AUC.

use std::path::Path;

use serde::Serialize;

use crate::error::{CelnetError, Result};
use crate::slide::lesions::{Hysteresis, find_lesions};
use crate::slide::probability::{
    FEATURE_COUNT, FEATURE_NAMES, Platt, SlideFeatures, SlideModel, fit_logistic,
};
use crate::studies::slide_mosaic::{ScoredSet, evaluate_scored, read_manifest};

/// The grid searched.
#[derive(Clone, Debug, Serialize)]
pub struct FitGrid {
    pub seeds: Vec<f32>,
    pub grows: Vec<f32>,
    pub l2: Vec<f64>,
}

impl Default for FitGrid {
    fn default() -> Self {
        FitGrid {
            seeds: vec![0.9, 0.95, 0.98, 0.99, 0.995, 0.999],
            grows: vec![0.2, 0.3, 0.5, 0.7, 0.9],
            l2: vec![0.01, 0.1, 1.0],
        }
    }
}

/// One candidate's measures on the selection slides.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub hysteresis: Hysteresis,
    pub l2: f64,
    pub auc: Option<f64>,
    pub category_accuracy: f64,
    pub froc_lesions: f64,
    pub false_lesions_per_normal_slide: f64,
    pub ece: f64,
    /// Whether the candidate keeps to [`MAX_FALSE_LESIONS`] lesions per normal slide.
    pub within_false_lesions: bool,
    /// What candidates are ranked by, among those within the false-lesion bound first:
    /// category accuracy plus the probability's AUC.
    pub rank_score: f64,
}

/// The most lesions a normal slide may hold on average: a lesion table that lists several
/// false lesions on every normal slide sends the reader after nothing, however well the slide
/// probability ranks slides.
pub const MAX_FALSE_LESIONS: f64 = 1.0;

impl Candidate {
    /// Whether `self` ranks above `other`.
    fn beats(&self, other: &Candidate) -> bool {
        (self.within_false_lesions, self.rank_score)
            > (other.within_false_lesions, other.rank_score + 1e-12)
    }
}

/// The chosen model and every candidate.
#[derive(Clone, Debug, Serialize)]
pub struct SlideFit {
    pub model: SlideModel,
    pub chosen: Candidate,
    pub candidates: Vec<Candidate>,
}

/// A set of slides (a folder made by `slide-mosaic`) and its saved heatmaps.
pub struct ScoredFolder<'a> {
    pub dir: &'a Path,
    pub scored: &'a ScoredSet,
}

impl ScoredFolder<'_> {
    /// The folder's name and its number of slides.
    fn describe(&self) -> String {
        let name = self.dir.file_name().unwrap_or(self.dir.as_os_str());
        format!(
            "{} ({} slides)",
            name.to_string_lossy(),
            self.scored.slides.len()
        )
    }

    /// Each slide's features with `hysteresis`, and whether it holds a lesion.
    fn rows(&self, hysteresis: Hysteresis) -> Result<(Vec<SlideFeatures>, Vec<u8>)> {
        let manifest = read_manifest(self.dir)?;
        if manifest.slides.len() != self.scored.slides.len() {
            return Err(CelnetError::Dataset(format!(
                "{}: the saved heatmaps are of another set",
                self.dir.display()
            )));
        }
        let features = self
            .scored
            .slides
            .iter()
            .map(|s| {
                let lesions = find_lesions(&s.heatmap, hysteresis, &s.scale, s.mpp);
                SlideFeatures::of(&s.heatmap, &lesions)
            })
            .collect();
        let labels = manifest
            .slides
            .iter()
            .map(|s| u8::from(!s.lesions.is_empty()))
            .collect();
        Ok((features, labels))
    }
}

/// Fits the slide model on `train`, choosing on `selection` over `grid`.
pub fn fit_slide_model(
    train: &ScoredFolder,
    selection: &ScoredFolder,
    grid: &FitGrid,
    weights: &str,
) -> Result<SlideFit> {
    let mut best: Option<(SlideModel, Candidate)> = None;
    let mut candidates = Vec::new();
    for &seed in &grid.seeds {
        for &grow in grid.grows.iter().filter(|&&g| g <= seed) {
            let hysteresis = Hysteresis { seed, grow };
            let (features, labels) = train.rows(hysteresis)?;
            let (selection_features, selection_labels) = selection.rows(hysteresis)?;
            let rows: Vec<[f64; FEATURE_COUNT]> = features.iter().map(|f| f.values()).collect();
            let (mean, scale) = standardisation(&rows);
            let x: Vec<Vec<f64>> = rows
                .iter()
                .map(|r| {
                    (0..FEATURE_COUNT)
                        .map(|i| (r[i] - mean[i]) / scale[i])
                        .collect()
                })
                .collect();
            for &l2 in &grid.l2 {
                let (coefficients, intercept) = fit_logistic(&x, &labels, l2);
                let mut model = SlideModel {
                    weights: weights.to_string(),
                    hysteresis,
                    features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
                    mean: mean.clone(),
                    scale: scale.clone(),
                    coefficients,
                    intercept,
                    calibration: Platt { a: 1.0, b: 0.0 },
                    threshold: 0.5,
                    l2,
                    fitted_on: train.describe(),
                    chosen_on: selection.describe(),
                };
                // Platt scaling on the selection slides: a one-feature logistic fit of the logit,
                // lightly penalised so that a perfectly separated set stays finite.
                let logits: Vec<Vec<f64>> = selection_features
                    .iter()
                    .map(|f| vec![model.logit(f)])
                    .collect();
                let (a, b) = fit_logistic(&logits, &selection_labels, 1e-2);
                model.calibration = Platt { a: a[0], b };
                let evaluation = evaluate_scored(selection.dir, selection.scored, &model)?;
                let candidate = Candidate {
                    hysteresis,
                    l2,
                    auc: evaluation.auc_probability,
                    category_accuracy: evaluation.category_accuracy,
                    froc_lesions: evaluation.froc_lesions,
                    false_lesions_per_normal_slide: evaluation.false_lesions_per_normal_slide,
                    ece: evaluation.ece_probability,
                    within_false_lesions: evaluation.false_lesions_per_normal_slide
                        <= MAX_FALSE_LESIONS,
                    rank_score: evaluation.category_accuracy
                        + evaluation.auc_probability.unwrap_or(0.0),
                };
                if best.as_ref().is_none_or(|(_, b)| candidate.beats(b)) {
                    best = Some((model, candidate.clone()));
                }
                candidates.push(candidate);
            }
        }
    }
    let (model, chosen) = best.ok_or_else(|| {
        CelnetError::InvalidParameter("the grid holds no thresholds with grow <= seed".into())
    })?;
    Ok(SlideFit {
        model,
        chosen,
        candidates,
    })
}

/// Means and standard deviations of the columns of `rows` (a constant column gets scale 1).
fn standardisation(rows: &[[f64; FEATURE_COUNT]]) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..FEATURE_COUNT)
        .map(|i| rows.iter().map(|r| r[i]).sum::<f64>() / n)
        .collect();
    let scale = (0..FEATURE_COUNT)
        .map(|i| {
            let var = rows.iter().map(|r| (r[i] - mean[i]).powi(2)).sum::<f64>() / n;
            if var > 1e-12 { var.sqrt() } else { 1.0 }
        })
        .collect();
    (mean, scale)
}
