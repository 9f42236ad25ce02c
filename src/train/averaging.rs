//! Weights after a run: the mean of several networks of one run, and batch-norm statistics
//! re-estimated on whole patches.

use burn::prelude::*;
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::data::PatchSet;
use crate::error::{CelnetError, Result};
use crate::network::model::Celnet;

/// The element-wise mean of several networks' parameters and batch-norm statistics.
///
/// Averaging weights taken along one training run (checkpoints of the same fine-tune, or a
/// model and its fine-tuned descendant) often generalises slightly better than any one of them.
/// Networks from unrelated runs should not be averaged: their filters do not correspond.
pub fn average_weights(models: Vec<Celnet>) -> Result<Celnet> {
    struct Collect(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.0.push(
                param
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("CELNet parameters are f32"),
            );
        }
    }
    struct Mean {
        sums: std::vec::IntoIter<Vec<f32>>,
        count: f32,
    }
    impl burn::module::ModuleMapper for Mean {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            let sum = self.sums.next().expect("same architecture");
            param.map(|tensor| {
                let shape = tensor.shape();
                let mean: Vec<f32> = sum.iter().map(|v| v / self.count).collect();
                Tensor::from_data(TensorData::new(mean, shape), &tensor.device())
            })
        }
    }

    let mut models = models.into_iter();
    let first = models
        .next()
        .ok_or_else(|| CelnetError::InvalidParameter("no networks to average".into()))?;
    let mut sums = Collect(Vec::new());
    first.visit(&mut sums);
    let mut count = 1.0;
    for model in models {
        let mut values = Collect(Vec::new());
        model.visit(&mut values);
        for (sum, value) in sums.0.iter_mut().zip(values.0) {
            for (s, v) in sum.iter_mut().zip(value) {
                *s += v;
            }
        }
        count += 1.0;
    }
    Ok(first.map(&mut Mean {
        sums: sums.0.into_iter(),
        count,
    }))
}

/// Re-estimates the batch-norm running statistics of `model` on whole, randomly oriented
/// patches of `set`, leaving every learned weight as it is.
///
/// Running statistics gathered on 64x64 training crops, or averaged across several networks,
/// are not those of the 96x96 inputs the model is evaluated on (SWA's "bn update" step fixes
/// the same mismatch). Each batch-norm layer keeps its exponential average (momentum 0.1), so
/// after `batches` batches the old statistics weigh `0.9^batches` (0.001 after 64).
pub fn recalibrate_batch_norm(
    model: Celnet,
    set: &PatchSet,
    batches: usize,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<Celnet> {
    if set.is_empty() || batches == 0 || batch_size == 0 {
        return Err(CelnetError::InvalidParameter(
            "batch-norm recalibration needs patches, batches and a batch size".into(),
        ));
    }
    let autodiff = device.clone().autodiff();
    // Training mode for the batch-norm layers, but no parameter is tracked: with nothing
    // requiring a gradient, autodiff records no graph (an unfinished graph would be kept alive).
    let model = model.to_device(&autodiff).train().no_grad();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..set.len()).collect();
    order.shuffle(&mut rng);
    let bar = ProgressBar::new(batches as u64);
    for b in 0..batches {
        let indices: Vec<usize> = (0..batch_size)
            .map(|i| order[(b * batch_size + i) % order.len()])
            .collect();
        let (data, _) = set.batch(&indices, set.side, Some(&mut rng));
        // A training-mode forward pass updates the running statistics; no gradient is needed.
        drop(model.forward(Tensor::<4>::from_data(data, &autodiff)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(model.valid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::model::CelnetConfig;

    #[test]
    fn averaging_two_networks_gives_the_midpoint() {
        let device = Device::flex();
        let a = CelnetConfig::new().init(&device);
        let b = CelnetConfig::new().init(&device);
        let first = |m: &Celnet| {
            let mut c = FirstParam(None);
            m.visit(&mut c);
            c.0.unwrap()
        };
        let (pa, pb) = (first(&a), first(&b));
        assert_ne!(pa, pb);
        let mean = first(&average_weights(vec![a.clone(), b]).unwrap());
        for ((m, x), y) in mean.iter().zip(&pa).zip(&pb) {
            assert!((m - (x + y) / 2.0).abs() < 1e-6);
        }
        assert_eq!(first(&average_weights(vec![a]).unwrap()), pa);
    }

    struct FirstParam(Option<Vec<f32>>);
    impl burn::module::ModuleVisitor for FirstParam {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if self.0.is_none() {
                self.0 = Some(param.val().into_data().try_to_vec::<f32>().unwrap());
            }
        }
    }

    #[test]
    fn recalibrated_statistics_reproduce_batch_normalisation_on_their_data() {
        // A patch that every quarter turn and flip leaves unchanged, so all augmented batches
        // are copies of it: once the running statistics have converged to its batch
        // statistics, inference must give what a training-mode pass (batch statistics) gives.
        let side = 32;
        let mut pixels = Vec::with_capacity(side * side * 3);
        for y in 0..side {
            for x in 0..side {
                let (dx, dy) = (2 * x as i64 - 31, 2 * y as i64 - 31);
                let r2 = (dx * dx + dy * dy) as u64;
                for c in 0..3u64 {
                    pixels.push(((r2 * (7 + c) + 40 * c) % 220 + 20) as u8);
                }
            }
        }
        let set = PatchSet::from_raw(side, pixels, vec![1], vec!["synthetic".into()]);
        let device = Device::flex();
        let model = CelnetConfig::new().with_base_channels(4).init(&device);
        let (data, _) = set.batch(&[0, 0], side, None);
        let logits = |m: &Celnet| -> Vec<f32> {
            let x = Tensor::<4>::from_data(data.clone(), &device);
            m.forward(x).into_data().try_to_vec().unwrap()
        };
        let autodiff = device.clone().autodiff();
        let batch_statistics: Vec<f32> = model
            .clone()
            .to_device(&autodiff)
            .train()
            .no_grad()
            .forward(Tensor::<4>::from_data(data.clone(), &autodiff))
            .into_data()
            .try_to_vec()
            .unwrap();
        let before = logits(&model.valid());
        let after = logits(&recalibrate_batch_norm(model, &set, 250, 2, 1, &device).unwrap());
        let close = |a: &[f32]| (a[0] - batch_statistics[0]).abs() < 1e-3;
        assert!(!close(&before), "{before:?} vs {batch_statistics:?}");
        assert!(close(&after), "{after:?} vs {batch_statistics:?}");
    }
}
