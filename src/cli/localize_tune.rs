//! `celnet localize-tune`: each method's parameters grid-searched on tuning mosaics, then
//! scored on held-out ones.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use celnet::studies::localize::{LocalizationReport, Method, ParamGrid, score_localisation, tune};
use celnet::{CelmParams, Result};

use super::common::{ModelArgs, PrintReport, emit};
use super::localize_eval::{prepare_glimpses, print_table};

#[derive(clap::Args)]
pub struct Args {
    /// Tuning glimpses (with masks).
    dir: PathBuf,
    /// Held-out glimpses (with masks) to score the tuned parameters on.
    #[arg(long)]
    test: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Serialize)]
struct TuneReport {
    tuning_dir: String,
    test_dir: Option<String>,
    grid: ParamGrid,
    tuned: Vec<LocalizationReport>,
    test: Vec<LocalizationReport>,
}

impl PrintReport for TuneReport {
    fn print_text(&self) {
        let n = self.tuned.first().map_or(0, |r| r.n);
        print_table(
            &format!("tuned on {} ({n} glimpses)", self.tuning_dir),
            &self.tuned,
        );
        if let Some(test_dir) = &self.test_dir {
            print_table(&format!("held out: {test_dir}"), &self.test);
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = args.model.load()?;
    let explainer = loaded.explainer();
    let grid = ParamGrid::default();
    let base = CelmParams::default();
    let start = Instant::now();
    let tuning = prepare_glimpses(&explainer, &args.dir, &grid.sigmas)?;
    let tuned = Method::ALL
        .iter()
        .map(|&m| {
            eprintln!(
                "tuning {} ({} candidates)",
                m.name(),
                grid.candidates(m, &base).len()
            );
            tune(&tuning, m, &grid, &base)
        })
        .collect::<Result<Vec<_>>>()?;
    let test = match &args.test {
        Some(test_dir) => {
            let sigmas: Vec<f32> = tuned.iter().map(|r| r.params.sigma).collect();
            let held_out = prepare_glimpses(&explainer, test_dir, &sigmas)?;
            tuned
                .iter()
                .map(|r| score_localisation(&held_out, r.method, &r.params))
                .collect::<Result<Vec<_>>>()?
        }
        None => Vec::new(),
    };
    let report = TuneReport {
        tuning_dir: args.dir.display().to_string(),
        test_dir: args.test.as_ref().map(|t| t.display().to_string()),
        grid,
        tuned,
        test,
    };
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
}
