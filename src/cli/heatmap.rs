//! `celnet heatmap`: the probability of metastasis across a field of view or region, at the
//! model's scale, with the slide score, tumour points and exports for QuPath.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;
use serde_json::json;

use celnet::classifier::DECISION_THRESHOLD;
use celnet::error::FileContext;
use celnet::explain::render::{OVERLAY_OPACITY, colormap, evidence_overlay, overlay};
use celnet::explain::{CelmParams, Map};
use celnet::heatmap::{
    Analysis, DEFAULT_STRIDE, Heatmap, Mode, ModelScaleImage, Point, SlideScores, TissueMask,
    WindowEvidence,
};
use celnet::input::{decode_image, save_image};
use celnet::model::GLIMPSE;
use celnet::scale::{FileResolution, MppSource, PixelSize, file_resolution, to_model_scale};
use celnet::slide::{MAX_CHUNK_PIXELS, ScaledSlide, Slide};
use celnet::{CelnetError, Result};

use super::common::{LoadedModel, ModelArgs, Report, emit, progress};

#[derive(clap::Args)]
pub struct Args {
    /// PNG, JPEG, TIFF, BMP or WebP image of H&E tissue.
    input: PathBuf,
    /// Output folder.
    #[arg(short, long)]
    out: PathBuf,
    /// Micrometres per pixel of the input (0.25 ≈ 40x, 0.5 ≈ 20x, 1.0 ≈ 10x); overrides the
    /// file's own value. Needed for images larger than 96x96 px whose file gives none.
    #[arg(long)]
    mpp: Option<f64>,
    /// Distance between window positions, in pixels at the model's scale (16 to 96).
    #[arg(long, default_value_t = DEFAULT_STRIDE)]
    stride: usize,
    /// Pyramid level of a slide file to read (0 = full resolution); by default the coarsest
    /// level at least as fine as the model's scale.
    #[arg(long)]
    level: Option<usize>,
    /// Score every window on its own (the reference) instead of tiles in one fully
    /// convolutional pass each.
    #[arg(long)]
    exact: bool,
    /// Windows scored per batch by --exact.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Explain (CELM, default parameters) the windows of the K most probable tumour points.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// Also explain the window centred on X,Y (the input's full-resolution pixels); repeatable.
    #[arg(long = "explain-at", value_name = "X,Y", value_parser = parse_point)]
    explain_at: Vec<(f64, f64)>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

fn parse_point(text: &str) -> std::result::Result<(f64, f64), String> {
    let (x, y) = text
        .split_once(',')
        .ok_or_else(|| format!("expected X,Y, got {text:?}"))?;
    let coordinate = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{v:?} is not a pixel coordinate"))
    };
    Ok((coordinate(x)?, coordinate(y)?))
}

/// What `heatmap` found; coordinates are full-resolution pixels of the input.
#[derive(Serialize)]
struct HeatmapReport {
    file: String,
    width: u32,
    height: u32,
    mpp: f64,
    mpp_source: MppSource,
    /// The pyramid level read, for slide files read tile by tile.
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<usize>,
    /// Input pixels are scaled by this factor to reach the model's scale.
    factor: f64,
    stride: usize,
    grid: [usize; 2],
    /// Windows scored (their centre lies in tissue).
    windows: usize,
    tissue_fraction: f64,
    /// The highest window probability; absent without tissue.
    slide_score: Option<f32>,
    /// Other ways to sum the heatmap up (see `celnet slide-eval`).
    slide_scores: SlideScores,
    points: Vec<Point>,
    /// CELM of the top-k tumour points' windows.
    evidence: Vec<ExplainedWindow>,
    mode: Mode,
    files: Vec<String>,
}

/// One explained window, in the input's full-resolution pixels.
#[derive(Serialize)]
struct ExplainedWindow {
    /// `top` for a top tumour point, `requested` for `--explain-at`.
    reason: &'static str,
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    probability: f32,
    overlay_png: String,
    regions: Vec<EvidenceRegion>,
}

/// A CELM region's bounding box in the input's pixels.
#[derive(Serialize)]
struct EvidenceRegion {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    mean_evidence: f32,
    max_evidence: f32,
}

impl ExplainedWindow {
    fn new(
        window: &WindowEvidence,
        reason: &'static str,
        to_input: f64,
        overlay_png: String,
    ) -> Self {
        let (ox, oy) = (window.origin.0 as f64, window.origin.1 as f64);
        let side = GLIMPSE as f64 * to_input;
        let explanation = &window.explanation;
        ExplainedWindow {
            reason,
            x: ox * to_input,
            y: oy * to_input,
            width: side,
            height: side,
            probability: explanation.prediction.probability,
            overlay_png,
            regions: explanation
                .regions
                .iter()
                .map(|r| EvidenceRegion {
                    x0: (ox + r.bbox.x0 as f64) * to_input,
                    y0: (oy + r.bbox.y0 as f64) * to_input,
                    x1: (ox + r.bbox.x1 as f64) * to_input,
                    y1: (oy + r.bbox.y1 as f64) * to_input,
                    mean_evidence: r.mean_evidence,
                    max_evidence: r.max_evidence,
                })
                .collect(),
        }
    }
}

impl Report for HeatmapReport {
    fn print_text(&self) {
        let source = match self.mpp_source {
            MppSource::File => "from the file",
            MppSource::User => "given",
            MppSource::AssumedGlimpse => "assumed for a glimpse",
        };
        println!(
            "{}: {}x{} px at {} µm/px ({source}), scaled by {:.3}; {} windows at stride {} in {:.0}% tissue",
            self.file,
            self.width,
            self.height,
            self.mpp,
            self.factor,
            self.windows,
            self.stride,
            100.0 * self.tissue_fraction
        );
        match self.slide_score {
            Some(score) => println!(
                "slide score {score:.4}; {} tumour point(s)",
                self.points.len()
            ),
            None => println!("no tissue found: nothing scored"),
        }
        for p in &self.points {
            println!("  ({:.0}, {:.0})  {:.4}", p.x, p.y, p.probability);
        }
        for w in &self.evidence {
            println!(
                "CELM of the window at ({:.0}, {:.0}), probability {:.4}: {} region(s), {}",
                w.x,
                w.y,
                w.probability,
                w.regions.len(),
                w.overlay_png
            );
        }
    }
}

/// The input, opened the way its format allows.
enum Input {
    /// A TIFF or SVS whose chunks are small enough: read tile by tile, never whole.
    Slide(Box<Slide<BufReader<File>>>),
    /// Anything else, decoded whole (within the decoder's size limit).
    Decoded(RgbImage, FileResolution),
}

impl Input {
    fn open(path: &Path) -> Result<Input> {
        let mut magic = [0u8; 4];
        let mut file = File::open(path).map_err(|e| CelnetError::io(path, e))?;
        let tiff = file.read_exact(&mut magic).is_ok()
            && matches!(&magic, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+");
        if tiff {
            file.rewind().map_err(|e| CelnetError::io(path, e))?;
            let slide = Slide::open(BufReader::new(file)).in_file(path)?;
            let base = &slide.levels()[0];
            if u64::from(base.chunk_width) * u64::from(base.chunk_height) <= MAX_CHUNK_PIXELS {
                return Ok(Input::Slide(Box::new(slide)));
            }
        }
        let bytes = std::fs::read(path).map_err(|e| CelnetError::io(path, e))?;
        let image = decode_image(&bytes).in_file(path)?;
        Ok(Input::Decoded(image, file_resolution(&bytes)))
    }
}

pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let loaded = args.model.load()?;
    let input = Input::open(&args.input)?;
    let (width, height, resolution) = match &input {
        Input::Slide(slide) => {
            let (w, h) = slide.dimensions();
            (w, h, slide.resolution())
        }
        Input::Decoded(image, resolution) => (image.width(), image.height(), *resolution),
    };
    let size = PixelSize::resolve(args.mpp, resolution, width, height).in_file(&args.input)?;
    let facts = InputFacts {
        file: args.input.display().to_string(),
        width,
        height,
        size,
    };
    match input {
        Input::Slide(slide) => {
            let scaled = ScaledSlide::new(*slide, size.mpp, args.level).in_file(&args.input)?;
            let level = Some(scaled.level());
            let to_input = scaled.to_level0();
            analyse(&args, &loaded, &scaled, facts, to_input, level, start)
        }
        Input::Decoded(..) if args.level.is_some_and(|l| l > 0) => {
            Err(CelnetError::InvalidParameter(format!(
                "{} has one resolution; --level applies to pyramidal TIFF and SVS files",
                args.input.display()
            )))
        }
        Input::Decoded(image, _) => {
            let scaled = to_model_scale(&image, &size);
            let to_input = size.factor().recip();
            analyse(
                &args,
                &loaded,
                scaled.as_ref(),
                facts,
                to_input,
                None,
                start,
            )
        }
    }
}

/// What is known of the input before it is analysed.
struct InputFacts {
    file: String,
    width: u32,
    height: u32,
    size: PixelSize,
}

/// Scores `image` (the input at the model's scale; multiply its coordinates by `to_input` to
/// get the input's), explains the top points and writes every output.
fn analyse(
    args: &Args,
    loaded: &LoadedModel,
    image: &(impl ModelScaleImage + ?Sized),
    facts: InputFacts,
    to_input: f64,
    level: Option<usize>,
    start: Instant,
) -> Result<()> {
    let mode = if args.exact { Mode::Exact } else { Mode::Dense };
    let bar = progress(0, "windows");
    let Analysis {
        thumbnail,
        tissue,
        heatmap,
    } = pollster::block_on(Analysis::new(
        &loaded.classifier(),
        image,
        args.stride,
        mode,
        args.batch_size,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    ))?;
    bar.finish_and_clear();
    let grid = heatmap.grid;

    let tumour_points = heatmap.tumour_points();
    let mut wanted: Vec<(Point, &str)> = tumour_points
        .iter()
        .take(args.top_k)
        .map(|&p| (p, "top"))
        .collect();
    let (model_width, model_height) = image.dimensions();
    for &(x, y) in &args.explain_at {
        let point = Point {
            x: x / to_input,
            y: y / to_input,
            probability: f32::NAN,
        };
        if point.x >= model_width as f64 || point.y >= model_height as f64 {
            return Err(CelnetError::InvalidParameter(format!(
                "--explain-at {x},{y} lies outside the {}x{} px input",
                facts.width, facts.height
            )));
        }
        wanted.push((point, "requested"));
    }
    let centres: Vec<Point> = wanted.iter().map(|(p, _)| *p).collect();
    let explained = pollster::block_on(WindowEvidence::explain_points(
        &loaded.explainer(),
        image,
        &centres,
        &CelmParams::default(),
    ))?;

    // Back to the input's pixels.
    let points: Vec<Point> = tumour_points
        .into_iter()
        .map(|p| Point {
            x: p.x * to_input,
            y: p.y * to_input,
            ..p
        })
        .collect();
    let mut files = write_outputs(
        &args.out,
        &thumbnail,
        model_width,
        &tissue,
        &heatmap,
        to_input,
    )?;
    let mut evidence = Vec::new();
    for (i, (window, (_, reason))) in explained.iter().zip(&wanted).enumerate() {
        let name = format!("evidence-{}.png", i + 1);
        let e = &window.explanation;
        save_image(
            &evidence_overlay(&window.image, &e.celm, &e.mask, OVERLAY_OPACITY),
            &args.out.join(&name),
        )?;
        evidence.push(ExplainedWindow::new(window, reason, to_input, name.clone()));
        files.push(name);
    }
    write_geojson(&args.out, &heatmap, &points, &evidence, to_input)?;
    let report = HeatmapReport {
        file: facts.file,
        width: facts.width,
        height: facts.height,
        mpp: facts.size.mpp,
        mpp_source: facts.size.source,
        level,
        factor: to_input.recip(),
        stride: grid.stride,
        grid: [grid.cols, grid.rows],
        windows: heatmap.scored(),
        tissue_fraction: tissue.fraction(),
        slide_score: heatmap.slide_score(),
        slide_scores: heatmap.slide_scores(),
        points,
        evidence,
        mode,
        files,
    };
    let summary = args.out.join("summary.json");
    let text = super::common::json_line(&report, &loaded.source, Some(start));
    std::fs::write(&summary, text).map_err(|e| CelnetError::io(&summary, e))?;
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
}

/// The probability under each pixel of a `width` x `height` picture of the model-scale image
/// (`per_pixel` model-scale px per picture px): that of the nearest window centre, 0 on
/// background.
fn probability_map(heatmap: &Heatmap, width: usize, height: usize, per_pixel: f64) -> Map {
    let grid = heatmap.grid;
    let nearest = |v: usize, n: usize| {
        let centre = (v as f64 + 0.5) * per_pixel;
        let cell = (centre - (GLIMPSE / 2) as f64) / grid.stride as f64;
        (cell.round().max(0.0) as usize).min(n - 1)
    };
    let data = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .map(|(x, y)| {
            heatmap
                .get(nearest(x, grid.cols), nearest(y, grid.rows))
                .unwrap_or(0.0)
        })
        .collect();
    Map::new(width, height, data)
}

/// Writes the pictures (over `thumbnail`, a copy of the `model_width`-px wide model-scale image)
/// and the window table; returns the names of the files a run writes.
fn write_outputs(
    out: &Path,
    thumbnail: &RgbImage,
    model_width: usize,
    tissue: &TissueMask,
    heatmap: &Heatmap,
    to_input: f64,
) -> Result<Vec<String>> {
    std::fs::create_dir_all(out).map_err(|e| CelnetError::io(out, e))?;
    let grid = heatmap.grid;
    let cells = Map::new(
        grid.cols,
        grid.rows,
        heatmap
            .probabilities
            .iter()
            .map(|p| p.unwrap_or(0.0))
            .collect(),
    );
    save_image(&colormap(&cells), &out.join("heatmap.png"))?;
    let (width, height) = (thumbnail.width() as usize, thumbnail.height() as usize);
    let per_pixel = model_width as f64 / width as f64;
    let map = probability_map(heatmap, width, height, per_pixel);
    save_image(
        &overlay(thumbnail, &map, OVERLAY_OPACITY),
        &out.join("overlay.png"),
    )?;
    let tissue_image = image::GrayImage::from_fn(tissue.cols as u32, tissue.rows as u32, |c, r| {
        image::Luma([if tissue.data[r as usize * tissue.cols + c as usize] {
            255
        } else {
            0
        }])
    });
    save_image(&tissue_image, &out.join("tissue.png"))?;

    let side = GLIMPSE as f64 * to_input;
    let mut csv = String::from("x,y,width,height,probability\n");
    for (x, y, p) in scored_windows(heatmap, to_input) {
        csv.push_str(&format!("{x:.1},{y:.1},{side:.1},{side:.1},{p:.6}\n"));
    }
    let csv_path = out.join("tiles.csv");
    std::fs::write(&csv_path, csv).map_err(|e| CelnetError::io(&csv_path, e))?;
    let names = [
        "heatmap.png",
        "overlay.png",
        "tissue.png",
        "tiles.csv",
        "heatmap.geojson",
        "summary.json",
    ];
    Ok(names.map(String::from).to_vec())
}

/// Top-left corners (input pixels) and probabilities of the scored windows.
fn scored_windows(heatmap: &Heatmap, to_input: f64) -> Vec<(f64, f64, f32)> {
    let grid = heatmap.grid;
    (0..grid.rows)
        .flat_map(|row| (0..grid.cols).map(move |col| (col, row)))
        .filter_map(|(col, row)| {
            let p = heatmap.get(col, row)?;
            let (x, y) = grid.origin(col, row);
            Some((x as f64 * to_input, y as f64 * to_input, p))
        })
        .collect()
}

/// Everything for QuPath in input pixels, in the form QuPath's GeoJSON reader takes (v0.4 and
/// later: `objectType`, `classification` with `name` and an RGB `color`, `measurements` as an
/// object): the scored windows as tiles classified by the decision threshold with their
/// probability,
/// the tumour points (already in input pixels), and the bounding boxes of the explained
/// windows' CELM regions.
fn write_geojson(
    out: &Path,
    heatmap: &Heatmap,
    points: &[Point],
    evidence: &[ExplainedWindow],
    to_input: f64,
) -> Result<()> {
    let side = GLIMPSE as f64 * to_input;
    let rectangle = |x0: f64, y0: f64, x1: f64, y1: f64| {
        json!({
            "type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
        })
    };
    let mut features = Vec::new();
    for (x, y, p) in scored_windows(heatmap, to_input) {
        features.push(json!({
            "type": "Feature",
            "geometry": rectangle(x, y, x + side, y + side),
            "properties": {
                "objectType": "tile",
                "name": "window",
                "classification": if p >= DECISION_THRESHOLD {
                    json!({ "name": "Tumor", "color": [200, 0, 0] })
                } else {
                    json!({ "name": "Normal", "color": [0, 160, 0] })
                },
                "measurements": { "probability": p },
            },
        }));
    }
    for p in points {
        features.push(json!({
            "type": "Feature",
            "geometry": { "type": "Point", "coordinates": [p.x, p.y] },
            "properties": {
                "objectType": "annotation",
                "name": "tumour point",
                "classification": { "name": "Tumor", "color": [200, 0, 0] },
                "measurements": { "probability": p.probability },
            },
        }));
    }
    for window in evidence {
        for r in &window.regions {
            features.push(json!({
                "type": "Feature",
                "geometry": rectangle(r.x0, r.y0, r.x1, r.y1),
                "properties": {
                    "objectType": "annotation",
                    "name": "CELM region",
                    "classification": { "name": "CELM evidence", "color": [0, 200, 200] },
                    "measurements": {
                        "mean_evidence": r.mean_evidence,
                        "max_evidence": r.max_evidence,
                        "window_probability": window.probability,
                    },
                },
            }));
        }
    }
    let geojson = json!({ "type": "FeatureCollection", "features": features });
    let path = out.join("heatmap.geojson");
    std::fs::write(&path, geojson.to_string()).map_err(|e| CelnetError::io(&path, e))
}
