//! Scoring a labelled patch set: accuracy, AUC, loss, sensitivity and specificity at the
//! decision threshold. `celnet eval` and training's per-epoch validation share it.

use burn::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::metrics::{Confusion, auc};
use crate::network::classifier::{Classifier, DECISION_THRESHOLD, sigmoid};
use crate::train::calibration::{expected_calibration_error, nll};
use crate::train::data::PatchSet;

/// How a classifier does on a labelled patch set.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub n: usize,
    pub accuracy: f64,
    /// Area under the ROC curve; NaN when the set holds one class only.
    pub auc: f64,
    /// Mean binary cross-entropy of the logits.
    pub loss: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    /// Expected calibration error of the probabilities ([`expected_calibration_error`]).
    pub ece: f64,
    /// Counts at [`DECISION_THRESHOLD`].
    pub confusion: Confusion,
    /// Each patch's logit, in the set's order.
    #[serde(skip)]
    pub logits: Vec<f32>,
    /// Each patch's probability, in the set's order.
    #[serde(skip)]
    pub probabilities: Vec<f32>,
}

/// Scores every patch of `set` (whole patches, with the classifier's test-time augmentation),
/// `batch_size` at a time.
pub fn evaluate_patches(
    classifier: &Classifier,
    set: &PatchSet,
    batch_size: usize,
) -> Result<Evaluation> {
    let mut logits = Vec::with_capacity(set.len());
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let (data, _) = set.batch(chunk, set.side, None);
        let x = Tensor::<4>::from_data(data, classifier.device());
        logits.extend(pollster::block_on(classifier.logits(x))?);
    }
    let probabilities: Vec<f32> = logits.iter().map(|&z| sigmoid(z)).collect();
    let confusion = Confusion::at(&probabilities, &set.labels, DECISION_THRESHOLD);
    Ok(Evaluation {
        n: set.len(),
        accuracy: confusion.accuracy(),
        auc: auc(&probabilities, &set.labels).unwrap_or(f64::NAN),
        loss: nll(&logits, &set.labels, 1.0),
        sensitivity: confusion.sensitivity(),
        specificity: confusion.specificity(),
        ece: expected_calibration_error(&probabilities, &set.labels),
        confusion,
        logits,
        probabilities,
    })
}
