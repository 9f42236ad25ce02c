//! One training run: the loop, its folder (checkpoints, best and per-epoch weights,
//! `metrics.csv`, `curves.png`) and the state that lets it resume at the next batch.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::relu;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::averaging::recalibrate_batch_norm;
use super::data::PatchSet;
use super::evaluation::evaluate_patches;
use super::options::{TrainOptions, optimizer};
use super::plot::{EpochPanel, epoch_chart};
use crate::error::{CelnetError, Result};
use crate::network::classifier::Classifier;
use crate::network::model::{Celnet, CelnetConfig};
use crate::weights;

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
        let validation =
            evaluate_patches(&Classifier::new(validated.clone(), device), valid_set, 256)?;
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
        training_curves(&state.history, &run.curves_png())?;
    }
    Ok(state)
}

/// Loss (left) and accuracy/AUC (right) per epoch.
fn training_curves(history: &[EpochMetrics], path: &Path) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let series = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|m| (m.epoch as f64, f(m))).collect()
    };
    let max_loss = history
        .iter()
        .flat_map(|m| [m.train_loss, m.valid_loss])
        .filter(|v| v.is_finite())
        .fold(0.1f64, f64::max)
        * 1.1;
    let loss = EpochPanel {
        caption: "loss (BCE)",
        y_range: 0.0..max_loss,
        lines: vec![
            ("train", series(|m| m.train_loss)),
            ("valid", series(|m| m.valid_loss)),
        ],
        legend_below: false,
    };
    let accuracy = EpochPanel {
        caption: "accuracy and AUC",
        y_range: 0.5..1.0,
        lines: vec![
            ("train accuracy", series(|m| m.train_accuracy)),
            ("valid accuracy", series(|m| m.valid_accuracy)),
            ("valid AUC", series(|m| m.valid_auc)),
        ],
        legend_below: true,
    };
    epoch_chart(history.len(), loss, accuracy, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::classifier::sigmoid;

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
