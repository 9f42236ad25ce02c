//! Training CELNet: BCE on the logit, L2 weight decay, SGD with Nesterov momentum (or Adam),
//! learning rate halved at 50% and 75% of the epochs, random quarter turns and flips,
//! validation every epoch, the lowest-validation-loss weights kept.
//!
//! A run lives in one folder and can be stopped at any time: `checkpoint.bpk`,
//! `optimizer.bpk` and `state.json` are rewritten every few minutes and at each epoch's end,
//! and a resumed run continues at the next batch in the same order (shuffles and augmentation
//! are derived from the seed, epoch and batch index).
//!
//! Also here, native only: the PCam data ([`data`]), evaluation on a labelled split
//! ([`evaluation`]), calibration ([`calibration`]), stain shifts ([`stain`]) and the charts
//! ([`plot`]).

pub mod averaging;
pub mod calibration;
pub mod data;
pub mod evaluation;
pub mod options;
pub mod plot;
pub mod run;
pub mod stain;

pub use averaging::{average_weights, recalibrate_batch_norm};
pub use options::{OptimizerKind, Schedule, TrainOptions};
pub use run::{EpochMetrics, RunDir, RunState, bce_with_logits, train};
