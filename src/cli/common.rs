//! What the commands share: the backend and weights options, CELM's parameter options, one way
//! to print a report as text or JSON, and progress bars.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use clap::ValueEnum;
use serde::Serialize;

use celnet::network::classifier::Tta;
use celnet::{CelmParams, Celnet, CelnetError, Classifier, Explainer, Result, weights};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// Burn's wgpu backend (Vulkan, Metal or DX12).
    Wgpu,
}

impl BackendChoice {
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Flex => "flex",
            BackendChoice::Wgpu => "wgpu",
        }
    }

    pub fn device(self) -> Result<Device> {
        match self {
            BackendChoice::Flex => Ok(Device::flex()),
            BackendChoice::Wgpu => Device::wgpu_options().init().map_err(|e| {
                CelnetError::Backend(format!(
                    "no usable wgpu adapter ({e}); install a Vulkan driver (e.g. mesa-vulkan-drivers) or use --backend flex"
                ))
            }),
        }
    }
}

#[derive(clap::Args)]
pub struct ModelArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    pub backend: BackendChoice,
    /// Weights file (burnpack); the embedded default model when absent.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

/// A network loaded as the options say, and where it came from.
pub struct LoadedModel {
    pub model: Celnet,
    pub device: Device,
    pub source: Source,
    /// Milliseconds spent choosing the device and loading the weights.
    pub load_ms: f64,
}

impl ModelArgs {
    pub fn load(&self) -> Result<LoadedModel> {
        let start = Instant::now();
        let device = self.backend.device()?;
        let model = match &self.weights {
            Some(path) => weights::load_file(path, &device)?,
            None => weights::load_default(&device)?,
        };
        Ok(LoadedModel {
            model,
            device,
            source: Source {
                backend: self.backend.name(),
                weights: self.weights.as_ref().map_or_else(
                    || format!("embedded default ({})", weights::DEFAULT_VERSION),
                    |p| p.display().to_string(),
                ),
            },
            load_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// `--tta`, for the commands that score.
#[derive(clap::Args)]
pub struct TtaArgs {
    /// Test-time augmentation: average the logits of the eight orientations of each image
    /// (quarter turns and mirror images); eight times the work.
    #[arg(long)]
    pub tta: bool,
}

impl TtaArgs {
    pub fn tta(&self) -> Tta {
        Tta::when(self.tta)
    }
}

impl LoadedModel {
    pub fn classifier(&self) -> Classifier {
        Classifier::new(self.model.clone(), &self.device)
    }

    pub fn explainer(&self) -> Explainer {
        Explainer::new(self.model.clone(), &self.device)
    }
}

/// The backend and weights behind a report; every JSON report carries them.
#[derive(Clone, Debug, Serialize)]
pub struct Source {
    pub backend: &'static str,
    pub weights: String,
}

#[derive(clap::Args)]
pub struct CelmArgs {
    /// Weight a of CAM3 against CAM2 in Mc.
    #[arg(long, default_value_t = CelmParams::default().alpha)]
    alpha: f32,
    /// Weight b of the saliency-gated term in the CELM.
    #[arg(long, default_value_t = CelmParams::default().beta)]
    beta: f32,
    /// Evidence threshold for regions.
    #[arg(long, default_value_t = CelmParams::default().threshold)]
    threshold: f32,
    /// Gaussian sigma (px) smoothing the CSM.
    #[arg(long, default_value_t = CelmParams::default().sigma)]
    sigma: f32,
}

impl CelmArgs {
    /// The parameters as given; the library function that fuses with them checks them once.
    pub fn params(&self) -> CelmParams {
        CelmParams {
            alpha: self.alpha,
            beta: self.beta,
            threshold: self.threshold,
            sigma: self.sigma,
            ..CelmParams::default()
        }
    }
}

/// A report a command prints: as text for people, or as one line of JSON.
pub trait PrintReport: Serialize {
    fn print_text(&self);
}

/// A report with where it came from and how long it took, as JSON consumers see it.
#[derive(Serialize)]
pub struct WithSource<'a, R: Serialize> {
    #[serde(flatten)]
    pub report: &'a R,
    #[serde(flatten)]
    pub source: &'a Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// Prints `report` as text, or as one line of JSON with its source and `started`'s elapsed time.
pub fn emit<R: PrintReport>(report: &R, json: bool, source: &Source, started: Option<Instant>) {
    if json {
        println!("{}", json_line(report, source, started));
    } else {
        report.print_text();
    }
}

/// `report` with its source and elapsed seconds, as one line of JSON.
pub fn json_line<R: Serialize>(report: &R, source: &Source, started: Option<Instant>) -> String {
    let value = WithSource {
        report,
        source,
        seconds: started.map(|s| s.elapsed().as_secs_f64()),
    };
    serde_json::to_string(&value).expect("reports serialise")
}

/// A progress bar on stderr for `len` steps.
pub fn progress(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// A bar whose position is work (what the time follows, so the estimate is right) while it
/// shows another count in its message (`done/total` of `what`).
pub fn work_progress(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{msg}} eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Milliseconds since `start`.
pub fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// A command's output folder, written atomically: every file goes to a staging folder inside it
/// and is moved in (a rename, atomic on one file system) once all are written, the summary
/// last. A reader, or a workflow engine after a killed job, never finds a half-written file, nor
/// a summary beside outputs of another run.
pub struct OutputFolder {
    out: PathBuf,
    staging: PathBuf,
    summary: &'static str,
}

const STAGING_PREFIX: &str = ".partial-";

impl OutputFolder {
    /// Creates `out` if needed, removes its old `summary` (it would vouch for the files this
    /// run replaces) and the staging folders of runs that were killed.
    pub fn create(out: &Path, summary: &'static str) -> Result<Self> {
        std::fs::create_dir_all(out).map_err(|e| CelnetError::io(out, e))?;
        remove_if_present(&out.join(summary))?;
        for entry in std::fs::read_dir(out).map_err(|e| CelnetError::io(out, e))? {
            let path = entry.map_err(|e| CelnetError::io(out, e))?.path();
            let stale = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(STAGING_PREFIX));
            if stale && path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(|e| CelnetError::io(&path, e))?;
            }
        }
        let staging = out.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        std::fs::create_dir(&staging).map_err(|e| CelnetError::io(&staging, e))?;
        Ok(Self {
            out: out.to_path_buf(),
            staging,
            summary,
        })
    }

    /// Where to write the file `name` for now.
    pub fn path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Writes `bytes` as the file `name`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name);
        std::fs::write(&path, bytes).map_err(|e| CelnetError::io(&path, e))
    }

    /// Moves every written file into the folder, the summary last.
    pub fn commit(self) -> Result<()> {
        let mut names = Vec::new();
        for entry in
            std::fs::read_dir(&self.staging).map_err(|e| CelnetError::io(&self.staging, e))?
        {
            names.push(
                entry
                    .map_err(|e| CelnetError::io(&self.staging, e))?
                    .file_name(),
            );
        }
        names.sort_by_key(|name| name == self.summary);
        for name in names {
            let (from, to) = (self.staging.join(&name), self.out.join(&name));
            std::fs::rename(&from, &to).map_err(|e| CelnetError::io(&to, e))?;
        }
        Ok(())
    }
}

impl Drop for OutputFolder {
    /// Removes the staging folder: empty after a commit, the partial outputs after a failure.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CelnetError::io(path, e)),
        _ => Ok(()),
    }
}
