//! Loading and saving CELNet weights (Burn's burnpack format) and the default model.
//!
//! Native builds embed the default weights; the browser build does not (they would be a fifth
//! of the wasm and block its compilation): the page fetches `weights/celnet-pcam.bpk` beside
//! the wasm and hands its bytes to the session.

use std::path::Path;

use burn::prelude::*;
use burn::store::{ModuleRecord, RecordError};
use burn::tensor::Bytes;

use crate::error::{CelnetError, Result};
use crate::network::model::{Celnet, CelnetConfig};

/// The shipped default weights (trained on the PCam subset; see `weights/README.md`).
#[cfg(not(target_arch = "wasm32"))]
pub const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../weights/celnet-pcam.bpk");

/// The version of the shipped default weights, as the model card names it.
pub const DEFAULT_VERSION: &str = "v6";

/// A network with the given weights, on `device`.
pub fn load_bytes(bytes: &[u8], device: &Device) -> Result<Celnet> {
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(record_error)?;
    apply(record, device)
}

/// A network with the weights in `path`, on `device`.
pub fn load_file(path: impl AsRef<Path>, device: &Device) -> Result<Celnet> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| CelnetError::io(path, e))?;
    load_bytes(&bytes, device)
}

/// The embedded default network on `device`.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_default(device: &Device) -> Result<Celnet> {
    load_bytes(DEFAULT_WEIGHTS, device)
}

/// The weights as burnpack bytes.
pub fn to_bytes(model: Celnet) -> Result<Vec<u8>> {
    let bytes = model.into_record().into_bytes().map_err(record_error)?;
    Ok(bytes.to_vec())
}

/// Writes the weights to `path`.
pub fn save_file(model: Celnet, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(model)?;
    std::fs::write(path, bytes).map_err(|e| CelnetError::io(path, e))
}

fn apply(record: ModuleRecord, device: &Device) -> Result<Celnet> {
    CelnetConfig::new()
        .init(device)
        .try_load_record(record)
        .map_err(record_error)
}

fn record_error(error: RecordError) -> CelnetError {
    match error {
        RecordError::Io(msg) => CelnetError::WeightsFormat(msg),
        RecordError::Validation(msg) => CelnetError::WeightsMismatch(msg),
    }
}
