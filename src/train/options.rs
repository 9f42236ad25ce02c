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

/// How the learning rate falls over a run's epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Halved after 50% and again after 75% of the epochs.
    #[default]
    Step,
    /// Cosine decay from the full rate in the first epoch towards zero after the last, one
    /// value per epoch.
    Cosine,
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
    /// Learning-rate schedule; runs saved before this option existed resume with steps.
    #[serde(default)]
    pub schedule: Schedule,
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
            schedule: Schedule::Step,
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

    /// The learning rate of `epoch` (0-based) under the run's [`Schedule`].
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        match self.schedule {
            Schedule::Step => {
                let halvings = [self.epochs / 2, self.epochs * 3 / 4]
                    .iter()
                    .filter(|&&at| at > 0 && epoch >= at)
                    .count();
                self.learning_rate / f64::from(1u32 << halvings)
            }
            Schedule::Cosine => {
                let progress = epoch as f64 / self.epochs.max(1) as f64;
                self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
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

    #[test]
    fn cosine_falls_from_the_full_rate_through_half_at_mid_run() {
        let options = TrainOptions {
            epochs: 4,
            learning_rate: 1.0,
            schedule: Schedule::Cosine,
            ..TrainOptions::default()
        };
        let rates: Vec<f64> = (0..4).map(|e| options.learning_rate_at(e)).collect();
        // 0.5 (1 + cos(pi e / 4)) for e = 0..3.
        let expected = [1.0, 0.853_553_390_593_273_8, 0.5, 0.146_446_609_406_726_24];
        for (rate, want) in rates.iter().zip(expected) {
            assert!((rate - want).abs() < 1e-12, "{rates:?}");
        }
    }

    #[test]
    fn runs_saved_without_a_schedule_resume_with_steps() {
        let mut json = serde_json::to_value(TrainOptions::default()).unwrap();
        json.as_object_mut().unwrap().remove("schedule");
        let options: TrainOptions = serde_json::from_value(json).unwrap();
        assert_eq!(options.schedule, Schedule::Step);
    }
}
