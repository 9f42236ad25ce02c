//! Binary classification metrics: accuracy, confusion matrix, ROC curve and its area.

use serde::Serialize;

/// Counts at a decision threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub true_negative: usize,
    pub false_positive: usize,
    pub false_negative: usize,
    pub true_positive: usize,
}

impl Confusion {
    /// Counts for scores compared with `threshold` (a score at the threshold is positive), in
    /// the scores' own precision.
    pub fn at<T: PartialOrd + Copy>(scores: &[T], labels: &[u8], threshold: T) -> Self {
        let mut c = Confusion::default();
        for (&s, &l) in scores.iter().zip(labels) {
            match (l == 1, s >= threshold) {
                (false, false) => c.true_negative += 1,
                (false, true) => c.false_positive += 1,
                (true, false) => c.false_negative += 1,
                (true, true) => c.true_positive += 1,
            }
        }
        c
    }

    /// Fraction classified correctly.
    pub fn accuracy(&self) -> f64 {
        let total =
            self.true_negative + self.false_positive + self.false_negative + self.true_positive;
        (self.true_negative + self.true_positive) as f64 / total.max(1) as f64
    }

    /// True-positive rate.
    pub fn sensitivity(&self) -> f64 {
        self.true_positive as f64 / (self.true_positive + self.false_negative).max(1) as f64
    }

    /// True-negative rate.
    pub fn specificity(&self) -> f64 {
        self.true_negative as f64 / (self.true_negative + self.false_positive).max(1) as f64
    }
}

/// The ROC curve as `(false-positive rate, true-positive rate)` points from (0, 0) to (1, 1),
/// one point per distinct score.
pub fn roc_curve(scores: &[f32], labels: &[u8]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positives = labels.iter().filter(|&&l| l == 1).count().max(1) as f64;
    let negatives = labels.iter().filter(|&&l| l != 1).count().max(1) as f64;
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut points = vec![(0.0, 0.0)];
    for (k, &i) in order.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            points.push((fp as f64 / negatives, tp as f64 / positives));
        }
    }
    points
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half. `None` when one class is absent.
pub fn auc(scores: &[f32], labels: &[u8]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l == 1).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let curve = roc_curve(scores, labels);
    let area = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum();
    Some(area)
}

/// A detection on a slide: its score and the lesion it falls in (`None`: a false positive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub slide: usize,
    pub score: f32,
    pub lesion: Option<usize>,
}

/// Camelyon16's FROC: sensitivity (share of lesions hit, each lesion counted once) at several
/// average numbers of false positives per slide, and their mean.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Froc {
    /// `(false positives per slide, sensitivity)` at 1/4, 1/2, 1, 2, 4 and 8.
    pub sensitivity_at_fp: Vec<(f64, f64)>,
    /// The mean of those six sensitivities.
    pub score: f64,
}

/// The FROC of `detections` over `slides` slides holding `lesions` lesions in all. Lesion ids
/// are global (unique across slides). A threshold keeps the detections scoring at least it;
/// the sensitivity at a rate is the best one reached without exceeding that many false
/// positives per slide on average.
pub fn froc(detections: &[Detection], lesions: usize, slides: usize) -> Froc {
    let mut order: Vec<&Detection> = detections.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut hit = std::collections::HashSet::new();
    let mut false_positives = 0usize;
    // (fp per slide, sensitivity) after each distinct threshold, from the highest down.
    let mut curve = vec![(0.0, 0.0)];
    for (k, d) in order.iter().enumerate() {
        match d.lesion {
            Some(lesion) => {
                hit.insert((d.slide, lesion));
            }
            None => false_positives += 1,
        }
        let last_of_tie = order.get(k + 1).is_none_or(|next| next.score != d.score);
        if last_of_tie {
            curve.push((
                false_positives as f64 / slides.max(1) as f64,
                hit.len() as f64 / lesions.max(1) as f64,
            ));
        }
    }
    let sensitivity_at_fp: Vec<(f64, f64)> = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
        .iter()
        .map(|&rate| {
            let best = curve
                .iter()
                .filter(|(fp, _)| *fp <= rate)
                .map(|&(_, s)| s)
                .fold(0.0, f64::max);
            (rate, best)
        })
        .collect();
    let score = sensitivity_at_fp.iter().map(|&(_, s)| s).sum::<f64>() / 6.0;
    Froc {
        sensitivity_at_fp,
        score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn froc_by_hand() {
        // Two slides, three lesions (ids 0 and 1 on slide 0, 2 on slide 1). Detections from the
        // highest score: hit lesion 0, a false positive, hit lesion 0 again (no new lesion),
        // hit lesion 2, two false positives.
        let d = |slide, score, lesion| Detection {
            slide,
            score,
            lesion,
        };
        let detections = [
            d(0, 0.9, Some(0)),
            d(1, 0.8, None),
            d(0, 0.7, Some(0)),
            d(1, 0.6, Some(2)),
            d(0, 0.5, None),
            d(1, 0.4, None),
        ];
        let f = froc(&detections, 3, 2);
        let at = |rate: f64| {
            f.sensitivity_at_fp
                .iter()
                .find(|(r, _)| *r == rate)
                .unwrap()
                .1
        };
        // At most 1/4 FP per slide (0 FPs): only lesion 0 is found.
        assert_eq!(at(0.25), 1.0 / 3.0);
        // Up to 1/2 (1 FP): lesions 0 and 2.
        assert_eq!(at(0.5), 2.0 / 3.0);
        // Up to 1 (2 FPs) and beyond: still two of three; lesion 1 is never hit.
        assert_eq!(at(1.0), 2.0 / 3.0);
        assert_eq!(at(8.0), 2.0 / 3.0);
        assert!((f.score - (1.0 / 3.0 + 5.0 * 2.0 / 3.0) / 6.0).abs() < 1e-12);
    }

    #[test]
    fn auc_matches_pair_counting() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9];
        let labels = [0, 0, 1, 1, 1, 0];
        // Count (positive, negative) pairs directly.
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..6 {
            for j in 0..6 {
                if labels[i] == 1 && labels[j] == 0 {
                    pairs += 1.0;
                    wins += if scores[i] > scores[j] {
                        1.0
                    } else if scores[i] == scores[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let expected = wins / pairs;
        assert!((auc(&scores, &labels).unwrap() - expected).abs() < 1e-12);
    }

    #[test]
    fn perfect_and_single_class() {
        assert_eq!(auc(&[0.1, 0.9], &[0, 1]), Some(1.0));
        assert_eq!(auc(&[0.9, 0.1], &[0, 1]), Some(0.0));
        assert_eq!(auc(&[0.1, 0.9], &[1, 1]), None);
    }

    #[test]
    fn confusion_counts() {
        let c = Confusion::at(&[0.2, 0.7, 0.4, 0.9], &[0, 0, 1, 1], 0.5);
        assert_eq!(
            c,
            Confusion {
                true_negative: 1,
                false_positive: 1,
                false_negative: 1,
                true_positive: 1
            }
        );
        assert_eq!(c.accuracy(), 0.5);
    }
}
