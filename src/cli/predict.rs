//! `celnet predict`: the probability of metastasis for each image.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use celnet::input::read_image;
use celnet::timings::Timings;
use celnet::{Classifier, Prediction, Result};

use super::Outcome;
use super::common::{ModelArgs, TtaArgs, json_line, ms_since};

#[derive(clap::Args)]
pub struct Args {
    /// PNG, JPEG, TIFF, BMP or WebP files, processed at native pixel size (~1 µm/px).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// One JSON object per image and line (JSON Lines), whatever the number of images.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tta: TtaArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// One line of `predict --json`: a score, or the error that prevented one.
#[derive(Serialize)]
struct Line {
    file: String,
    #[serde(flatten)]
    prediction: Option<Prediction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timings_ms: Option<Timings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn score(classifier: &Classifier, path: &Path) -> Result<(Prediction, Timings)> {
    let start = Instant::now();
    let image = read_image(path)?;
    let decode = ms_since(start);
    let network_start = Instant::now();
    let prediction = pollster::block_on(classifier.predict(&image))?;
    let timings = Timings {
        decode,
        network: ms_since(network_start),
        total: ms_since(start),
        ..Timings::default()
    };
    Ok((prediction, timings))
}

pub fn run(args: Args) -> Result<Outcome> {
    let loaded = args.model.load()?;
    let classifier = loaded.classifier().with_tta(args.tta.tta());
    let mut outcome = Outcome::Done;
    for path in &args.images {
        let file = path.display().to_string();
        let line = match score(&classifier, path) {
            Ok((prediction, timings)) => {
                if !args.json {
                    println!(
                        "{file}\t{:.4}\t{}\t{:.1} ms",
                        prediction.probability,
                        prediction.label.name(),
                        timings.total
                    );
                }
                Line {
                    file,
                    prediction: Some(prediction),
                    timings_ms: Some(timings),
                    error: None,
                }
            }
            Err(e) => {
                outcome = Outcome::SomeFailed;
                if !args.json {
                    eprintln!("{e}");
                }
                Line {
                    file,
                    prediction: None,
                    timings_ms: None,
                    error: Some(e.to_string()),
                }
            }
        };
        if args.json {
            println!("{}", json_line(&line, &loaded.source, None));
        }
    }
    Ok(outcome)
}
