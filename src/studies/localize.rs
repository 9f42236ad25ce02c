//! How well an evidence map localises tumour: the paper's region rule scored against a truth
//! mask, pixel-level sanity checks, and the grid search that tunes CELM's parameters.
//!
//! The rule (Huang & Chung, 2019): a predicted region is a true positive when at least 75% of
//! its area lies in tumour and a false positive when at least 75% lies in normal tissue;
//! anything in between counts as neither. Definitions kept fixed across the project:
//! - **precision** = TP regions / (TP + FP regions), 0 when no region qualifies either way;
//! - **recall** = share of ground-truth tumour components (8-connected) that at least one
//!   TP region overlaps by one pixel or more;
//! - **pixel IoU** = |predicted ∩ tumour| / |predicted ∪ tumour| summed over all glimpses,
//!   where "predicted" is the union of the kept regions;
//! - **pixel AUROC** of the map's values against the tumour mask, pooled over all pixels.

use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};
use crate::explain::regions::{Labels, describe_regions, label_components, region_mask};
use crate::explain::{CelmParams, Map, MapKind, Mask, PreparedEvidence, Region};
use crate::metrics::auc;

/// Share of a region's area that decides its verdict.
pub const REGION_RULE_SHARE: f64 = 0.75;

/// The evidence map a localisation method thresholds into regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Method {
    /// CELM: Grad-CAM of F2 and F3, partly gated by the guided-backprop saliency map.
    Celm,
    /// Grad-CAM of F3 alone (CELNet + Grad-CAM).
    Gradcam3,
    /// `Mc = a CAM3 + (1 - a) CAM2`, without the saliency map.
    Gradcam23,
    /// The cancer saliency map (guided backprop) alone.
    Csm,
}

impl Method {
    /// Every method, in the order of the paper's table.
    pub const ALL: [Method; 4] = [
        Method::Celm,
        Method::Gradcam3,
        Method::Gradcam23,
        Method::Csm,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Celm => "celm",
            Method::Gradcam3 => "gradcam3",
            Method::Gradcam23 => "gradcam23",
            Method::Csm => "csm",
        }
    }

    /// The map this method thresholds into regions.
    pub fn map_kind(self) -> MapKind {
        match self {
            Method::Celm => MapKind::Celm,
            Method::Gradcam3 => MapKind::Cam3,
            Method::Gradcam23 => MapKind::Mc,
            Method::Csm => MapKind::Csm,
        }
    }

    /// A human-readable label for tables.
    pub fn title(self) -> &'static str {
        match self {
            Method::Celm => "CELNet + CELM",
            Method::Gradcam3 => "CELNet + Grad-CAM (CAM3)",
            Method::Gradcam23 => "CAM2 + CAM3 (no CSM)",
            Method::Csm => "CSM alone",
        }
    }
}

/// What the rule says about one predicted region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    TruePositive,
    FalsePositive,
    Neither,
}

/// The verdict for a region of `area` pixels of which `tumour` lie in tumour.
pub fn verdict(tumour: usize, area: usize) -> Verdict {
    let share = tumour as f64 / area.max(1) as f64;
    if share >= REGION_RULE_SHARE {
        Verdict::TruePositive
    } else if 1.0 - share >= REGION_RULE_SHARE {
        Verdict::FalsePositive
    } else {
        Verdict::Neither
    }
}

/// Counts that add up over glimpses; every score is a ratio of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub glimpses: usize,
    pub true_positive_regions: usize,
    pub false_positive_regions: usize,
    pub other_regions: usize,
    pub tumour_components: usize,
    pub tumour_components_found: usize,
    pub intersection_pixels: usize,
    pub union_pixels: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.glimpses += o.glimpses;
        self.true_positive_regions += o.true_positive_regions;
        self.false_positive_regions += o.false_positive_regions;
        self.other_regions += o.other_regions;
        self.tumour_components += o.tumour_components;
        self.tumour_components_found += o.tumour_components_found;
        self.intersection_pixels += o.intersection_pixels;
        self.union_pixels += o.union_pixels;
    }
}

impl Counts {
    /// TP regions / (TP + FP regions); 0 when there are none.
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positive_regions,
            self.true_positive_regions + self.false_positive_regions,
        )
    }

    /// Share of tumour components touched by a TP region; 0 without tumour.
    pub fn recall(&self) -> f64 {
        ratio(self.tumour_components_found, self.tumour_components)
    }

    /// Harmonic mean of precision and recall (the tuning objective).
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    }

    /// Pooled pixel intersection over union; 1 when neither prediction nor tumour has pixels.
    pub fn iou(&self) -> f64 {
        if self.union_pixels == 0 {
            1.0
        } else {
            ratio(self.intersection_pixels, self.union_pixels)
        }
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Scores the kept `regions` of a labelling against the truth mask of one glimpse.
pub fn score_regions(labels: &Labels, regions: &[Region], truth: &Mask) -> Result<Counts> {
    truth.ensure_covers("the truth mask", labels.width, labels.height)?;
    let n = labels.count as usize;
    // Per label: tumour pixels, and whether the region is kept.
    let mut tumour = vec![0usize; n + 1];
    for (&label, &t) in labels.data.iter().zip(&truth.data) {
        if t {
            tumour[label as usize] += 1;
        }
    }
    let mut kept = vec![false; n + 1];
    let mut is_tp = vec![false; n + 1];
    let mut counts = Counts {
        glimpses: 1,
        ..Counts::default()
    };
    for r in regions {
        let label = r.label as usize;
        kept[label] = true;
        match verdict(tumour[label], r.area) {
            Verdict::TruePositive => {
                is_tp[label] = true;
                counts.true_positive_regions += 1;
            }
            Verdict::FalsePositive => counts.false_positive_regions += 1,
            Verdict::Neither => counts.other_regions += 1,
        }
    }
    let truth_labels = label_components(truth);
    let mut found = vec![false; truth_labels.count as usize + 1];
    for ((&label, &t), &component) in labels.data.iter().zip(&truth.data).zip(&truth_labels.data) {
        let predicted = kept[label as usize];
        if predicted && t {
            counts.intersection_pixels += 1;
        }
        if predicted || t {
            counts.union_pixels += 1;
        }
        if is_tp[label as usize] {
            found[component as usize] = true;
        }
    }
    counts.tumour_components = truth_labels.count as usize;
    counts.tumour_components_found = found.iter().skip(1).filter(|&&f| f).count();
    Ok(counts)
}

/// One glimpse's evidence, prepared for many fusions, with its tumour mask.
#[derive(Clone, Debug)]
pub struct PreparedGlimpse {
    pub evidence: PreparedEvidence,
    pub truth: Mask,
}

impl PreparedGlimpse {
    /// Pairs evidence with the truth mask of the glimpse called `name`.
    pub fn new(name: &str, evidence: PreparedEvidence, truth: Mask) -> Result<Self> {
        truth.ensure_covers(name, evidence.width, evidence.height)?;
        Ok(Self { evidence, truth })
    }

    /// The map `method` localises with under `params` (not validated here: see [`score_localisation`]).
    pub fn map(&self, method: Method, params: &CelmParams) -> std::borrow::Cow<'_, Map> {
        self.evidence.map(method.map_kind(), params)
    }

    /// Region counts of `method` under `params`.
    pub fn score(&self, method: Method, params: &CelmParams) -> Result<Counts> {
        self.score_map(&self.map(method, params), params)
    }

    /// Region counts of any map of this glimpse, thresholded into regions as CELM's are.
    pub fn score_map(&self, map: &Map, params: &CelmParams) -> Result<Counts> {
        let (_, labels) = region_mask(map, params);
        let regions = describe_regions(&labels, map, params.min_region_area);
        score_regions(&labels, &regions, &self.truth)
    }
}

/// The scores of one method over a set of glimpses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalizationReport {
    pub method: Method,
    pub n: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub iou: f64,
    /// `None` when the glimpses hold only one class of pixel.
    pub pixel_auroc: Option<f64>,
    pub params: CelmParams,
    pub counts: Counts,
}

/// Scores `method` under `params` over `glimpses`, pixel AUROC included.
pub fn score_localisation(
    glimpses: &[PreparedGlimpse],
    method: Method,
    params: &CelmParams,
) -> Result<LocalizationReport> {
    params.validate()?;
    let mut counts = Counts::default();
    let mut values = Vec::new();
    let mut truth = Vec::new();
    for g in glimpses {
        let map = g.map(method, params);
        counts += g.score_map(&map, params)?;
        values.extend_from_slice(&map.data);
        truth.extend(g.truth.data.iter().map(|&t| u8::from(t)));
    }
    Ok(report(method, params, counts, auc(&values, &truth)))
}

fn report(
    method: Method,
    params: &CelmParams,
    counts: Counts,
    pixel_auroc: Option<f64>,
) -> LocalizationReport {
    LocalizationReport {
        method,
        n: counts.glimpses,
        precision: counts.precision(),
        recall: counts.recall(),
        f1: counts.f1(),
        iou: counts.iou(),
        pixel_auroc,
        params: *params,
        counts,
    }
}

/// The values tried by [`tune`]. Each method searches only the parameters its map depends on
/// (the threshold always; `alpha` for CELM and CAM2+CAM3; `beta` for CELM; `sigma` for CELM and
/// the CSM).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParamGrid {
    pub alphas: Vec<f32>,
    pub betas: Vec<f32>,
    pub sigmas: Vec<f32>,
    pub thresholds: Vec<f32>,
}

impl Default for ParamGrid {
    fn default() -> Self {
        let steps = |from: f32, to: f32, step: f32| {
            let n = ((to - from) / step).round() as usize;
            (0..=n).map(|i| from + step * i as f32).collect()
        };
        Self {
            alphas: steps(0.0, 1.0, 0.25),
            betas: steps(0.0, 1.0, 0.25),
            sigmas: vec![0.0, 1.0, 2.0, 4.0],
            thresholds: steps(0.2, 0.8, 0.05),
        }
    }
}

impl ParamGrid {
    /// Every parameter set `method` is tried with, starting from `base`.
    pub fn candidates(&self, method: Method, base: &CelmParams) -> Vec<CelmParams> {
        let fixed = |v: f32| vec![v];
        let (alphas, betas, sigmas) = match method {
            Method::Celm => (self.alphas.clone(), self.betas.clone(), self.sigmas.clone()),
            Method::Gradcam3 => (fixed(1.0), fixed(0.0), fixed(base.sigma)),
            Method::Gradcam23 => (self.alphas.clone(), fixed(0.0), fixed(base.sigma)),
            Method::Csm => (fixed(base.alpha), fixed(base.beta), self.sigmas.clone()),
        };
        let mut out = Vec::new();
        for &alpha in &alphas {
            for &beta in &betas {
                for &sigma in &sigmas {
                    for &threshold in &self.thresholds {
                        out.push(CelmParams {
                            alpha,
                            beta,
                            sigma,
                            threshold,
                            ..*base
                        });
                    }
                }
            }
        }
        out
    }
}

/// The best parameters of `method` on `glimpses`: highest region F1, then highest pixel IoU,
/// then the earliest candidate. Candidates are spread over the available cores.
pub fn tune(
    glimpses: &[PreparedGlimpse],
    method: Method,
    grid: &ParamGrid,
    base: &CelmParams,
) -> Result<LocalizationReport> {
    let candidates = grid.candidates(method, base);
    let score = |params: &CelmParams| -> Result<Counts> {
        let mut total = Counts::default();
        for g in glimpses {
            total += g.score(method, params)?;
        }
        Ok(total)
    };
    let score = &score;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = candidates.len().div_ceil(workers).max(1);
    let results: Vec<Counts> = if workers > 1 {
        std::thread::scope(|scope| {
            let handles: Vec<_> = candidates
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(score).collect::<Result<Vec<_>>>()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a tuning worker panicked"))
                .collect::<Result<Vec<_>>>()
        })?
        .into_iter()
        .flatten()
        .collect()
    } else {
        candidates.iter().map(score).collect::<Result<_>>()?
    };
    let best = results
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| {
            a.f1()
                .total_cmp(&b.f1())
                .then(a.iou().total_cmp(&b.iou()))
                .then(j.cmp(i))
        })
        .map(|(i, _)| i)
        .ok_or_else(|| CelnetError::InvalidParameter("the tuning grid is empty".into()))?;
    score_localisation(glimpses, method, &candidates[best])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::Evidence;

    fn mask_from(rows: &[&str]) -> Mask {
        Mask {
            width: rows[0].len(),
            height: rows.len(),
            data: rows
                .iter()
                .flat_map(|r| r.chars().map(|c| c == '#'))
                .collect(),
        }
    }

    /// Scores a predicted mask (all components kept) against a truth mask.
    fn score(predicted: &[&str], truth: &[&str]) -> Counts {
        let predicted = mask_from(predicted);
        let labels = label_components(&predicted);
        let evidence = Map::zeros(predicted.width, predicted.height);
        let regions = describe_regions(&labels, &evidence, 1);
        score_regions(&labels, &regions, &mask_from(truth)).unwrap()
    }

    #[test]
    fn verdict_follows_the_75_percent_rule() {
        assert_eq!(verdict(8, 10), Verdict::TruePositive);
        assert_eq!(verdict(75, 100), Verdict::TruePositive);
        assert_eq!(verdict(6, 10), Verdict::Neither);
        assert_eq!(verdict(74, 100), Verdict::Neither);
        assert_eq!(verdict(26, 100), Verdict::Neither);
        assert_eq!(verdict(25, 100), Verdict::FalsePositive);
        assert_eq!(verdict(0, 10), Verdict::FalsePositive);
    }

    #[test]
    fn region_80_percent_in_tumour_is_a_true_positive() {
        // A 5x2 region: 8 pixels in the tumour (columns 0-3), 2 outside.
        let c = score(
            &["#####.....", "#####.....", ".........."],
            &["####......", "####......", "####......"],
        );
        assert_eq!(c.true_positive_regions, 1);
        assert_eq!(c.false_positive_regions, 0);
        assert_eq!((c.tumour_components, c.tumour_components_found), (1, 1));
        assert_eq!(c.precision(), 1.0);
        assert_eq!(c.recall(), 1.0);
        // Intersection 8; union = 12 tumour + 2 predicted outside.
        assert_eq!((c.intersection_pixels, c.union_pixels), (8, 14));
    }

    #[test]
    fn region_60_percent_in_tumour_counts_as_neither() {
        // A 5x2 region with 6 pixels in the tumour (columns 0-2).
        let c = score(
            &["#####.....", "#####.....", ".........."],
            &["###.......", "###.......", "###......."],
        );
        assert_eq!(c.true_positive_regions, 0);
        assert_eq!(c.false_positive_regions, 0);
        assert_eq!(c.other_regions, 1);
        assert_eq!(c.recall(), 0.0, "a region that is not a TP finds nothing");
        assert_eq!(c.precision(), 0.0);
    }

    #[test]
    fn region_in_normal_tissue_is_a_false_positive_and_recall_counts_components() {
        // Two tumour components; one TP region on the first, one FP region in normal tissue.
        let c = score(
            &["##........", "##........", "......###.", "......###."],
            &["##.......#", "##.......#", "..........", ".........."],
        );
        assert_eq!(c.true_positive_regions, 1);
        assert_eq!(c.false_positive_regions, 1);
        assert_eq!(c.precision(), 0.5);
        assert_eq!((c.tumour_components, c.tumour_components_found), (2, 1));
        assert_eq!(c.recall(), 0.5);
        assert!((c.f1() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn counts_add_across_glimpses() {
        let mut total = score(&["##", "##"], &["##", "##"]);
        total += score(&["##", ".."], &["..", ".."]);
        assert_eq!(total.glimpses, 2);
        assert_eq!(total.precision(), 0.5);
        assert_eq!(total.recall(), 1.0);
        assert_eq!(total.iou(), 4.0 / 6.0);
    }

    #[test]
    fn mismatched_mask_is_an_error() {
        let predicted = mask_from(&["##", "##"]);
        let labels = label_components(&predicted);
        let err = score_regions(&labels, &[], &mask_from(&["###"])).unwrap_err();
        assert!(err.to_string().contains("3x1"), "{err}");
        assert!(matches!(err, CelnetError::MaskSize { .. }), "{err:?}");
    }

    #[test]
    fn grid_searches_only_the_parameters_a_method_uses() {
        let grid = ParamGrid::default();
        let base = CelmParams::default();
        let n_thr = grid.thresholds.len();
        assert_eq!(grid.candidates(Method::Gradcam3, &base).len(), n_thr);
        assert_eq!(
            grid.candidates(Method::Gradcam23, &base).len(),
            grid.alphas.len() * n_thr
        );
        assert_eq!(
            grid.candidates(Method::Csm, &base).len(),
            grid.sigmas.len() * n_thr
        );
        assert_eq!(
            grid.candidates(Method::Celm, &base).len(),
            grid.alphas.len() * grid.betas.len() * grid.sigmas.len() * n_thr
        );
        assert!(grid.thresholds.iter().all(|t| (0.0..=1.0).contains(t)));
    }

    /// A glimpse whose CAM3 marks the left half and whose CAM2 marks the right half, with the
    /// tumour on the left: Grad-CAM of F3 localises it, CAM2 alone does not.
    fn synthetic_glimpse() -> PreparedGlimpse {
        let (w, h) = (8usize, 8usize);
        let half = |left: bool| {
            Map::new(
                w,
                h,
                (0..w * h)
                    .map(|i| f32::from(u8::from((i % w < w / 2) == left)))
                    .collect(),
            )
        };
        let evidence = Evidence {
            width: w,
            height: h,
            logit: 2.0,
            cam2: half(false),
            cam3: half(true),
            guided_gradient: vec![1.0; 3 * w * h],
        };
        let truth = Mask {
            width: w,
            height: h,
            data: half(true).data.iter().map(|&v| v > 0.5).collect(),
        };
        PreparedGlimpse::new("synthetic", PreparedEvidence::new(evidence, &[0.0]), truth).unwrap()
    }

    #[test]
    fn tuning_finds_the_weight_that_localises() {
        let glimpses = [synthetic_glimpse()];
        let base = CelmParams {
            sigma: 0.0,
            mask_sigma: 0.0,
            min_region_area: 1,
            ..CelmParams::default()
        };
        let best = tune(&glimpses, Method::Gradcam23, &ParamGrid::default(), &base).unwrap();
        assert_eq!((best.precision, best.recall, best.iou), (1.0, 1.0, 1.0));
        assert!(best.params.alpha > 0.5, "alpha {}", best.params.alpha);
        assert_eq!(best.pixel_auroc, Some(1.0));
        let cam2_only = CelmParams { alpha: 0.0, ..base };
        let wrong = score_localisation(&glimpses, Method::Gradcam23, &cam2_only).unwrap();
        assert_eq!((wrong.precision, wrong.recall), (0.0, 0.0));
        assert_eq!(wrong.pixel_auroc, Some(0.0));
        assert_eq!(wrong.counts.false_positive_regions, 1);
    }
}
