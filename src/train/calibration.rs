//! Whether a probability behaves like one: expected calibration error, the reliability
//! diagram's bins, and temperature scaling (Guo et al., 2017), which divides every logit by one
//! scalar fitted to held-out data. Dividing by a positive number changes no decision and no
//! ranking (accuracy and AUC stay as they are), only how sure the probabilities sound.

use serde::Serialize;

use crate::network::classifier::sigmoid;
use crate::slide::probability::fit_logistic;

/// The number of bins of the usual ECE.
pub const ECE_BINS: usize = 15;

/// One bin of the reliability diagram: patches whose probability of metastasis lies in
/// `[lower, upper)` (the last bin includes 1).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean probability of metastasis in the bin (NaN when empty).
    pub mean_probability: f64,
    /// Fraction of the bin's patches that show metastasis (NaN when empty).
    pub observed_frequency: f64,
}

/// Reliability of the probabilities of metastasis `probabilities` against `labels` (0 or 1):
/// `bins` equal-width bins over [0, 1].
pub fn reliability(probabilities: &[f32], labels: &[u8], bins: usize) -> Vec<ReliabilityBin> {
    assert_eq!(probabilities.len(), labels.len());
    assert!(bins > 0);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for (&p, &y) in probabilities.iter().zip(labels) {
        let bin = ((f64::from(p) * bins as f64) as usize).min(bins - 1);
        sums[bin].0 += 1;
        sums[bin].1 += f64::from(p);
        sums[bin].2 += usize::from(y);
    }
    sums.into_iter()
        .enumerate()
        .map(|(i, (count, probability, positives))| ReliabilityBin {
            lower: i as f64 / bins as f64,
            upper: (i + 1) as f64 / bins as f64,
            count,
            mean_probability: probability / count as f64,
            observed_frequency: positives as f64 / count as f64,
        })
        .collect()
}

/// Expected calibration error: the count-weighted mean gap between the mean probability of
/// metastasis and the observed frequency of metastasis over [`ECE_BINS`] bins (0 = perfectly
/// calibrated). NaN for an empty set.
pub fn expected_calibration_error(probabilities: &[f32], labels: &[u8]) -> f64 {
    if probabilities.is_empty() {
        return f64::NAN;
    }
    let n = probabilities.len() as f64;
    reliability(probabilities, labels, ECE_BINS)
        .iter()
        .filter(|bin| bin.count > 0)
        .map(|bin| bin.count as f64 / n * (bin.mean_probability - bin.observed_frequency).abs())
        .sum()
}

/// Mean binary cross-entropy of `logits / temperature` against `labels`.
pub fn nll(logits: &[f32], labels: &[u8], temperature: f64) -> f64 {
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(&z, &y)| {
            let z = f64::from(z) / temperature;
            z.max(0.0) - z * f64::from(y) + (-z.abs()).exp().ln_1p()
        })
        .sum();
    total / logits.len().max(1) as f64
}

/// The temperature `T > 0` that minimises the NLL of `sigmoid(logit / T)` on `logits` and
/// `labels`. The NLL is convex in `1 / T`, so Newton's method from `T = 1` (with halved steps
/// where one would not lower the NLL) finds the minimum.
pub fn fit_temperature(logits: &[f32], labels: &[u8]) -> f64 {
    assert_eq!(logits.len(), labels.len());
    let loss = |a: f64| nll(logits, labels, 1.0 / a);
    let mut a = 1.0f64;
    for _ in 0..100 {
        let (mut gradient, mut curvature) = (0.0, 0.0);
        for (&z, &y) in logits.iter().zip(labels) {
            let z = f64::from(z);
            let p = f64::from(sigmoid((a * z) as f32));
            gradient += (p - f64::from(y)) * z;
            curvature += p * (1.0 - p) * z * z;
        }
        if curvature <= 0.0 {
            break;
        }
        let mut step = gradient / curvature;
        // Stay positive and never go uphill.
        while a - step <= 0.0 || loss(a - step) > loss(a) {
            step /= 2.0;
            if step.abs() < 1e-12 {
                return 1.0 / a;
            }
        }
        a -= step;
        if step.abs() < 1e-9 * a {
            break;
        }
    }
    1.0 / a
}

/// The Platt scaling `(scale, shift)` with `scale > 0` that minimises the NLL of
/// `sigmoid(scale · logit + shift)` on `logits` and `labels`: a one-feature logistic
/// regression. Unlike a temperature, the shift moves decisions.
pub fn fit_platt(logits: &[f32], labels: &[u8]) -> (f64, f64) {
    assert_eq!(logits.len(), labels.len());
    let rows: Vec<Vec<f64>> = logits.iter().map(|&z| vec![f64::from(z)]).collect();
    let (coefficients, shift) = fit_logistic(&rows, labels, 0.0);
    (coefficients[0], shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_of_a_hand_made_case() {
        // Bin [0.0, 1/15): p = 0.05 twice, one positive: gap |0.05 - 0.5| = 0.45, weight 2/5.
        // Bin [0.8, 0.867): p = 0.85 three times, three positives: gap 0.15, weight 3/5.
        let probabilities = [0.05, 0.05, 0.85, 0.85, 0.85];
        let labels = [0, 1, 1, 1, 1];
        let expected = 2.0 / 5.0 * 0.45 + 3.0 / 5.0 * 0.15;
        let ece = expected_calibration_error(&probabilities, &labels);
        assert!((ece - expected).abs() < 1e-6, "{ece} vs {expected}");
        let bins = reliability(&probabilities, &labels, ECE_BINS);
        assert_eq!(bins.len(), 15);
        assert_eq!(bins[0].count, 2);
        assert_eq!(bins[12].count, 3);
        assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 5);
    }

    #[test]
    fn a_perfectly_calibrated_set_has_no_error_and_one_lands_in_the_last_bin() {
        let probabilities = [0.0, 0.0, 1.0, 1.0];
        let labels = [0, 0, 1, 1];
        assert_eq!(expected_calibration_error(&probabilities, &labels), 0.0);
        assert_eq!(reliability(&probabilities, &labels, 15)[14].count, 2);
    }

    /// Labels drawn from `sigmoid(true_logit)`, reported logits three times too confident.
    fn overconfident_set() -> (Vec<f32>, Vec<u8>) {
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        let mut state = 12345u64;
        for i in 0..4000 {
            let true_logit = (i % 81) as f64 / 10.0 - 4.0;
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let uniform = (state >> 11) as f64 / (1u64 << 53) as f64;
            labels.push(u8::from(uniform < 1.0 / (1.0 + (-true_logit).exp())));
            logits.push((3.0 * true_logit) as f32);
        }
        (logits, labels)
    }

    #[test]
    fn platt_scaling_finds_scale_and_shift() {
        // Reported logits three times too confident and shifted by 1.5: the fit undoes both.
        let (logits, labels) = overconfident_set();
        let shifted: Vec<f32> = logits.iter().map(|&z| z + 4.5).collect();
        let (scale, shift) = fit_platt(&shifted, &labels);
        assert!((scale - 1.0 / 3.0).abs() < 0.05, "scale {scale}");
        assert!((shift + 1.5).abs() < 0.2, "shift {shift}");
        // On unshifted logits it needs (almost) no shift and finds the temperature.
        let (scale, shift) = fit_platt(&logits, &labels);
        let temperature = fit_temperature(&logits, &labels);
        assert!((1.0 / scale - temperature).abs() < 0.05 * temperature);
        assert!(shift.abs() < 0.1, "shift {shift}");
    }

    #[test]
    fn temperature_scaling_finds_the_overconfidence_and_lowers_nll_and_ece() {
        let (logits, labels) = overconfident_set();
        let temperature = fit_temperature(&logits, &labels);
        assert!((temperature - 3.0).abs() < 0.4, "temperature {temperature}");
        assert!(nll(&logits, &labels, temperature) < nll(&logits, &labels, 1.0));
        let probabilities = |t: f64| -> Vec<f32> {
            logits
                .iter()
                .map(|&z| sigmoid((f64::from(z) / t) as f32))
                .collect()
        };
        let before = expected_calibration_error(&probabilities(1.0), &labels);
        let after = expected_calibration_error(&probabilities(temperature), &labels);
        assert!(after < before / 2.0, "ECE {before} -> {after}");
        // The fitted temperature is the NLL's minimum: nudging it either way costs.
        for t in [temperature * 0.95, temperature * 1.05] {
            assert!(nll(&logits, &labels, t) > nll(&logits, &labels, temperature));
        }
    }
}
