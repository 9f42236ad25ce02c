//! Training CELNet: BCE on the logit, L2 weight decay, SGD with Nesterov momentum (or Adam),
//! learning rate halved at 50% and 75% of the epochs, random quarter turns and flips,
//! validation every epoch, the lowest-validation-loss weights kept.
//!
//! A run lives in one folder and can be stopped at any time: `checkpoint.bpk`,
//! `optimizer.bpk` and `state.json` are rewritten every few minutes and at each epoch's end,
//! and a resumed run continues at the next batch in the same order (shuffles and augmentation
//! are derived from the seed, epoch and batch index).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::classifier::Classifier;
use crate::data::{ColourAugmentation, PatchSet};
use crate::error::{CelnetError, Result};
use crate::evaluation::evaluate;
use crate::model::{Celnet, CelnetConfig};
use crate::stain::StainJitter;
use crate::weights;

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

/// One row of `metrics.csv`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub learning_rate: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub valid_loss: f64,
    pub valid_accuracy: f64,
    pub valid_auc: f64,
    pub images_per_second: f64,
    pub seconds: f64,
}

/// Everything needed to resume a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub options: TrainOptions,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// The next batch of that epoch.
    pub next_batch: usize,
    /// Loss and correct count summed over the batches done in this epoch.
    pub epoch_loss_sum: f64,
    pub epoch_correct: usize,
    pub epoch_seen: usize,
    pub best_valid_loss: Option<f64>,
    pub best_epoch: Option<usize>,
    pub history: Vec<EpochMetrics>,
    /// Wall time spent training, summed over sessions.
    pub seconds: f64,
}

/// Files of a run folder.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join("checkpoint.bpk")
    }
    pub fn optimizer(&self) -> PathBuf {
        self.0.join("optimizer.bpk")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }
    pub fn best(&self) -> PathBuf {
        self.0.join("best.bpk")
    }
    /// The validated weights at the end of `epoch` (1-based), for averaging.
    pub fn epoch(&self, epoch: usize) -> PathBuf {
        self.0.join(format!("epoch-{epoch}.bpk"))
    }
    pub fn metrics_csv(&self) -> PathBuf {
        self.0.join("metrics.csv")
    }
    pub fn curves_png(&self) -> PathBuf {
        self.0.join("curves.png")
    }
}

/// Mean binary cross-entropy of logits `z` against targets `y`, in the stable form
/// `max(z, 0) - z y + log(1 + exp(-|z|))`.
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let softplus = logits.clone().abs().neg().exp().log1p();
    (relu(logits.clone()) - logits * targets + softplus).mean()
}

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

fn optimizer(options: &TrainOptions) -> ModuleOptimizer {
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

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| CelnetError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CelnetError::io(path, e))
}

fn save_checkpoint(
    run: &RunDir,
    model: &Celnet,
    optim: &ModuleOptimizer,
    state: &RunState,
) -> Result<()> {
    write_atomic(&run.checkpoint(), &weights::to_bytes(model.clone())?)?;
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| optimizer_state_error(&run.optimizer(), e))?;
    write_atomic(&run.optimizer(), &optim_bytes)?;
    let json = serde_json::to_vec_pretty(state).expect("run state serialises");
    write_atomic(&run.state(), &json)
}

fn optimizer_state_error(path: &Path, error: impl std::fmt::Display) -> CelnetError {
    CelnetError::OptimizerState {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

fn write_metrics_csv(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut csv = String::from(
        "epoch,learning_rate,train_loss,train_accuracy,valid_loss,valid_accuracy,valid_auc,images_per_second,seconds\n",
    );
    for m in history {
        csv.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.2},{:.1}\n",
            m.epoch,
            m.learning_rate,
            m.train_loss,
            m.train_accuracy,
            m.valid_loss,
            m.valid_accuracy,
            m.valid_auc,
            m.images_per_second,
            m.seconds
        ));
    }
    write_atomic(path, csv.as_bytes())
}

/// Training loss and correct answers summed on the device and read back only when shown or
/// saved: reading a value waits for the device to finish its queued work, so reading after
/// every step would make each step wait for the one before.
#[derive(Default)]
struct PendingStats {
    loss_sum: Option<Tensor<1>>,
    correct: Option<Tensor<1, Int>>,
    seen: usize,
}

impl PendingStats {
    /// Adds a batch's mean loss `[1]`, logits `[n]` and labels `[n]`.
    fn add(&mut self, loss: Tensor<1>, logits: Tensor<1>, labels: Tensor<1>) {
        let n = logits.dims()[0];
        let loss_sum = loss.detach() * n as f32;
        // sigmoid(z) >= 0.5 exactly when z >= 0.
        let correct = logits
            .detach()
            .greater_equal_elem(0.0)
            .equal(labels.greater_equal_elem(0.5))
            .int()
            .sum();
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum + loss_sum,
            None => loss_sum,
        });
        self.correct = Some(match self.correct.take() {
            Some(sum) => sum + correct,
            None => correct,
        });
        self.seen += n;
    }

    /// Moves the sums into the run's epoch statistics.
    fn flush_into(&mut self, state: &mut RunState) {
        if let (Some(loss), Some(correct)) = (self.loss_sum.take(), self.correct.take()) {
            state.epoch_loss_sum += f64::from(loss.into_scalar::<f32>());
            state.epoch_correct += correct.into_scalar::<i64>() as usize;
            state.epoch_seen += self.seen;
        }
        self.seen = 0;
    }
}

/// Mixes the seed with the epoch and batch into an independent stream.
fn stream_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    let mut z = seed ^ ((epoch as u64) << 32) ^ (batch as u64);
    // splitmix64 finaliser
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Trains (or resumes) a run in `run_dir` and returns its final state. `init` starts a new run
/// from given weights (fine-tuning) instead of a random initialisation.
pub fn train(
    train_set: &PatchSet,
    valid_set: &PatchSet,
    options: TrainOptions,
    run_dir: &Path,
    device: &Device,
    init: Option<Celnet>,
) -> Result<RunState> {
    options.check()?;
    std::fs::create_dir_all(run_dir).map_err(|e| CelnetError::io(run_dir, e))?;
    let run = RunDir(run_dir.to_path_buf());
    let autodiff = device.clone().autodiff();

    let (mut model, mut optim, mut state) = if run.state().exists() {
        let json = std::fs::read(run.state()).map_err(|e| CelnetError::io(run.state(), e))?;
        let mut state: RunState =
            serde_json::from_slice(&json).map_err(|e| CelnetError::RunState {
                path: run.state().display().to_string(),
                message: e.to_string(),
            })?;
        // Longer runs may extend a finished one; everything else comes from the checkpoint.
        state.options.epochs = options.epochs;
        state.options.checkpoint_secs = options.checkpoint_secs;
        if init.is_some() {
            eprintln!(
                "note: {} resumes its own checkpoint; --init is ignored",
                run_dir.display()
            );
        }
        let model = weights::load_file(run.checkpoint(), &autodiff)?;
        let optim = optimizer(&state.options)
            .load(run.optimizer())
            .map_err(|e| optimizer_state_error(&run.optimizer(), e))?;
        eprintln!(
            "resuming {} at epoch {}, batch {}",
            run_dir.display(),
            state.epoch + 1,
            state.next_batch
        );
        (model, optim, state)
    } else {
        autodiff.seed(options.seed);
        let model = match init {
            Some(model) => model.to_device(&autodiff).train(),
            None => CelnetConfig::new().init(&autodiff),
        };
        let state = RunState {
            options: options.clone(),
            epoch: 0,
            next_batch: 0,
            epoch_loss_sum: 0.0,
            epoch_correct: 0,
            epoch_seen: 0,
            best_valid_loss: None,
            best_epoch: None,
            history: Vec::new(),
            seconds: 0.0,
        };
        (model, optimizer(&options), state)
    };
    let options = state.options.clone();
    let colours = options.colours();
    let checkpoint_every = Duration::from_secs(options.checkpoint_secs);
    let interactive = std::io::stderr().is_terminal();

    while state.epoch < options.epochs {
        let epoch = state.epoch;
        let learning_rate = options.learning_rate_at(epoch);
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(stream_seed(
            options.seed,
            epoch,
            usize::MAX,
        )));
        let batches: Vec<&[usize]> = order.chunks(options.batch_size).collect();

        let bar = ProgressBar::new(batches.len() as u64).with_position(state.next_batch as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, options.epochs));
        let epoch_start = Instant::now();
        let mut last_checkpoint = Instant::now();
        let mut last_log = Instant::now();
        let mut images_this_session = 0usize;
        let mut pending = PendingStats::default();
        let mut message = String::new();
        let mut last_message = Instant::now();

        for (b, indices) in batches.iter().enumerate().skip(state.next_batch) {
            let mut rng = StdRng::seed_from_u64(stream_seed(options.seed, epoch, b));
            let (data, labels) =
                train_set.augmented_batch(indices, options.crop, Some(&mut rng), &colours);
            let n = indices.len();
            let x = Tensor::<4>::from_data(data, &autodiff);
            let y = Tensor::<1>::from_data(TensorData::new(labels, [n]), &autodiff);
            let logits = model.forward(x).reshape([n]);
            let loss = bce_with_logits(logits.clone(), y.clone());
            let grads = loss.backward();
            let grads = GradientsParams::from_grads(grads, &model);
            model = optim.step(learning_rate, model, grads);
            pending.add(loss, logits, y);
            state.next_batch = b + 1;
            images_this_session += n;

            // Reading the statistics waits for the device, so it happens about once a second.
            if last_message.elapsed() >= Duration::from_secs(1) || state.next_batch == batches.len()
            {
                pending.flush_into(&mut state);
                let elapsed = epoch_start.elapsed().as_secs_f64();
                let rate = images_this_session as f64 / elapsed.max(1e-9);
                message = format!(
                    "loss {:.4} acc {:.3} | {:.1} img/s",
                    state.epoch_loss_sum / state.epoch_seen as f64,
                    state.epoch_correct as f64 / state.epoch_seen as f64,
                    rate
                );
                bar.set_message(message.clone());
                last_message = Instant::now();
            }
            bar.set_position(state.next_batch as u64);
            if !interactive && last_log.elapsed() >= Duration::from_secs(20) {
                eprintln!(
                    "epoch {}/{} batch {}/{} {message}",
                    epoch + 1,
                    options.epochs,
                    state.next_batch,
                    batches.len()
                );
                last_log = Instant::now();
            }
            if last_checkpoint.elapsed() >= checkpoint_every {
                pending.flush_into(&mut state);
                state.seconds += last_checkpoint.elapsed().as_secs_f64();
                save_checkpoint(&run, &model, &optim, &state)?;
                last_checkpoint = Instant::now();
            }
        }
        bar.finish_and_clear();
        pending.flush_into(&mut state);
        // Training throughput, before validation.
        let images_per_second =
            images_this_session as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
        state.seconds += last_checkpoint.elapsed().as_secs_f64();

        let valid_start = Instant::now();
        let mut validated = model.valid();
        if options.bn_batches > 0 && options.crop < train_set.side {
            validated = recalibrate_batch_norm(
                validated,
                train_set,
                options.bn_batches,
                options.batch_size,
                stream_seed(options.seed, epoch, usize::MAX - 1),
                device,
            )?;
        }
        let validation = evaluate(&Classifier::new(validated.clone(), device), valid_set, 256)?;
        state.seconds += valid_start.elapsed().as_secs_f64();
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            learning_rate,
            train_loss: state.epoch_loss_sum / state.epoch_seen.max(1) as f64,
            train_accuracy: state.epoch_correct as f64 / state.epoch_seen.max(1) as f64,
            valid_loss: validation.loss,
            valid_accuracy: validation.accuracy,
            valid_auc: validation.auc,
            images_per_second,
            seconds: state.seconds,
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4} acc {:.4} | valid loss {:.4} acc {:.4} auc {:.4} | lr {:.2e} | {:.0} s total",
            metrics.epoch,
            options.epochs,
            metrics.train_loss,
            metrics.train_accuracy,
            metrics.valid_loss,
            metrics.valid_accuracy,
            metrics.valid_auc,
            learning_rate,
            metrics.seconds
        );
        if state
            .best_valid_loss
            .is_none_or(|best| validation.loss < best)
        {
            state.best_valid_loss = Some(validation.loss);
            state.best_epoch = Some(epoch + 1);
            write_atomic(&run.best(), &weights::to_bytes(validated.clone())?)?;
        }
        write_atomic(&run.epoch(epoch + 1), &weights::to_bytes(validated)?)?;
        state.history.push(metrics);
        state.epoch += 1;
        state.next_batch = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_correct = 0;
        state.epoch_seen = 0;
        save_checkpoint(&run, &model, &optim, &state)?;
        write_metrics_csv(&run.metrics_csv(), &state.history)?;
        crate::plot::training_curves(&state.history, &run.curves_png())?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::sigmoid;

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
    fn bce_matches_the_textbook_formula() {
        let device = Device::flex();
        let z = [-3.0f32, -0.5, 0.0, 2.0];
        let y = [0.0f32, 1.0, 1.0, 0.0];
        let got: f32 = bce_with_logits(
            Tensor::from_data(TensorData::new(z.to_vec(), [4]), &device),
            Tensor::from_data(TensorData::new(y.to_vec(), [4]), &device),
        )
        .into_scalar();
        let expected: f32 = z
            .iter()
            .zip(&y)
            .map(|(&z, &y)| {
                let p = sigmoid(z);
                -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
            })
            .sum::<f32>()
            / 4.0;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }
}
