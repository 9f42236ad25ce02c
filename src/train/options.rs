//! A training run's hyper-parameters (stored in its `state.json`) and the optimiser they make.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

use super::data::ColourAugmentation;
use super::stain::StainJitter;
use crate::error::{CelnetError, Result};

/// Which optimiser to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with Nesterov momentum 0.9 (the paper).
    Sgd,
    /// Adam (beta 0.9 / 0.999).
    Adam,
}

/// Hyper-parameters of a run, stored in its `state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    pub seed: u64,
    /// Side of the training crops (96 = whole patches; 64 = random crops around the centre).
    pub crop: usize,
    /// Seconds between mid-epoch checkpoints.
    pub checkpoint_secs: u64,
    /// Colour jitter of the training batches (see [`PatchSet::augmented_batch`]); 0 = none.
    #[serde(default)]
    pub colour_jitter: f32,
    /// Strength of the random stain shifts in HED space ([`StainJitter::of`]); 0 = none.
    #[serde(default)]
    pub stain_jitter: f32,
    /// When training on crops smaller than the patches: batches of whole patches used to
    /// re-estimate the batch-norm statistics before each validation (0 = keep the crops').
    /// Runs saved before this option existed resume without it.
    #[serde(default)]
    pub bn_batches: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            learning_rate: 1e-3,
            optimizer: OptimizerKind::Adam,
            weight_decay: 1e-5,
            seed: 42,
            crop: 96,
            checkpoint_secs: 300,
            colour_jitter: 0.0,
            stain_jitter: 0.0,
            bn_batches: 64,
        }
    }
}

impl TrainOptions {
    /// Checks the augmentation strengths: a gain or a stain scale that could reach zero or
    /// below would not imitate any lab.
    pub fn check(&self) -> Result<()> {
        for (name, value) in [
            ("colour jitter", self.colour_jitter),
            ("stain jitter", self.stain_jitter),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(CelnetError::InvalidParameter(format!(
                    "{name} {value} is outside [0, 1)"
                )));
            }
        }
        Ok(())
    }

    /// The colour augmentation these options ask for.
    pub fn colours(&self) -> ColourAugmentation {
        ColourAugmentation {
            colour_jitter: self.colour_jitter,
            stain: StainJitter::of(self.stain_jitter),
        }
    }

    /// The learning rate of `epoch` (0-based): halved at 50% and again at 75% of the epochs.
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        let halvings = [self.epochs / 2, self.epochs * 3 / 4]
            .iter()
            .filter(|&&at| at > 0 && epoch >= at)
            .count();
        self.learning_rate / f64::from(1u32 << halvings)
    }
}

pub(super) fn optimizer(options: &TrainOptions) -> ModuleOptimizer {
    let decay = Some(WeightDecayConfig::new(options.weight_decay as f32));
    match options.optimizer {
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(0.9)
                    .with_dampening(0.0)
                    .with_nesterov(true),
            ))
            .init(),
        OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_halves_at_half_and_three_quarters() {
        let options = TrainOptions {
            epochs: 8,
            learning_rate: 1.0,
            ..TrainOptions::default()
        };
        let rates: Vec<f64> = (0..8).map(|e| options.learning_rate_at(e)).collect();
        assert_eq!(rates, vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
    }
}
