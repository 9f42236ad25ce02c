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
    /// Counts for scores compared with `threshold` (a score at the threshold is positive).
    pub fn at(scores: &[f32], labels: &[u8], threshold: f32) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
