//! `celnet explain`: every map of CELM for one image, as pictures and JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use celnet::explain::render::{OVERLAY_OPACITY, colormap, evidence_overlay, mask_image};
use celnet::explain::{CelmParams, Explanation, MapKind, PreparedEvidence, Region};
use celnet::input::{read_image, save_image};
use celnet::timings::Timings;
use celnet::{CelnetError, Prediction, Result};

use super::common::{CelmArgs, ModelArgs, Source, WithSource, ms_since};

#[derive(clap::Args)]
pub struct Args {
    image: PathBuf,
    /// Output folder.
    #[arg(short, long)]
    out: PathBuf,
    /// Also write the maps' values (row-major, in [0, 1]) to maps.json.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    celm: CelmArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// `explain.json`.
#[derive(Serialize)]
struct ExplainReport<'a> {
    file: String,
    width: u32,
    height: u32,
    #[serde(flatten)]
    prediction: Prediction,
    params: CelmParams,
    regions: &'a [Region],
    timings_ms: Timings,
    files: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let loaded = args.model.load()?;
    let explainer = loaded.explainer();
    let t = Instant::now();
    let image = read_image(&args.image)?;
    let decode = ms_since(t);
    let t = Instant::now();
    let params = args.celm.params();
    let evidence = pollster::block_on(explainer.evidence(&image))?;
    let network = ms_since(t);
    let t = Instant::now();
    let explanation = PreparedEvidence::new(evidence, &[params.sigma]).fuse(&params)?;
    let fusion = ms_since(t);

    let files = write_pictures(&image, &explanation, &args.out, args.raw)?;
    let report = ExplainReport {
        file: args.image.display().to_string(),
        width: image.width(),
        height: image.height(),
        prediction: explanation.prediction,
        params: explanation.params,
        regions: &explanation.regions,
        timings_ms: Timings {
            model_load: Some(loaded.load_ms),
            decode,
            network,
            fusion: Some(fusion),
            total: ms_since(start),
        },
        files,
    };
    write_json(&args.out.join("explain.json"), &report, &loaded.source)?;
    println!(
        "{}: probability {:.4} ({}), {} region(s); maps in {}",
        args.image.display(),
        explanation.prediction.probability,
        explanation.prediction.label.name(),
        explanation.regions.len(),
        args.out.display()
    );
    Ok(())
}

/// Writes the input, each map, the mask, the overlay and optionally `maps.json` into `out`;
/// returns the file names.
fn write_pictures(
    image: &image::RgbImage,
    explanation: &Explanation,
    out: &Path,
    raw: bool,
) -> Result<Vec<String>> {
    std::fs::create_dir_all(out).map_err(|e| CelnetError::io(out, e))?;
    let mut files = Vec::new();
    let mut save = |picture: &image::RgbImage, name: &str| -> Result<()> {
        let file = format!("{name}.png");
        save_image(picture, &out.join(&file))?;
        files.push(file);
        Ok(())
    };
    save(image, "input")?;
    for (kind, map) in explanation.maps() {
        save(&colormap(map), kind.name())?;
    }
    save(&mask_image(&explanation.mask), "mask")?;
    let overlay = evidence_overlay(image, &explanation.celm, &explanation.mask, OVERLAY_OPACITY);
    save(&overlay, "overlay")?;
    if raw {
        let mut maps = serde_json::Map::new();
        maps.insert("width".into(), image.width().into());
        maps.insert("height".into(), image.height().into());
        for kind in MapKind::ALL {
            maps.insert(
                kind.name().into(),
                serde_json::json!(explanation.map(kind).data),
            );
        }
        let path = out.join("maps.json");
        std::fs::write(&path, serde_json::Value::Object(maps).to_string())
            .map_err(|e| CelnetError::io(&path, e))?;
        files.push("maps.json".into());
    }
    Ok(files)
}

fn write_json<R: Serialize>(path: &Path, report: &R, source: &Source) -> Result<()> {
    let value = WithSource {
        report,
        source,
        seconds: None,
    };
    let text = serde_json::to_string_pretty(&value).expect("reports serialise");
    std::fs::write(path, text).map_err(|e| CelnetError::io(path, e))
}
