//! `celnet heatmap`: the probability of metastasis across a field of view or region, at the
//! model's scale, with the slide score, tumour points and exports for QuPath.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;

use celnet::error::FileContext;
use celnet::explain::CelmParams;
use celnet::explain::render::{OVERLAY_OPACITY, evidence_overlay};
use celnet::export::{
    ExplainedWindow, HeatmapReport, geojson, heatmap_picture, overlay_picture, points_in_input,
    tiles_csv, tissue_picture,
};
use celnet::heatmap::{
    Analysis, DEFAULT_STRIDE, Heatmap, Mode, ModelScaleImage, Point, TissueMask, WindowEvidence,
};
use celnet::input::save_image;
use celnet::scale::{MppSource, PixelSize, to_model_scale};
use celnet::slide::{OpenedImage, ScaledSlide};
use celnet::{CelnetError, Result};

use super::common::{LoadedModel, ModelArgs, Report, TtaArgs, emit, progress};

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
    #[command(flatten)]
    tta: TtaArgs,
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
                w.overlay_png.as_deref().unwrap_or("")
            );
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let loaded = args.model.load()?;
    let file = File::open(&args.input).map_err(|e| CelnetError::io(&args.input, e))?;
    let input = OpenedImage::open(BufReader::new(file)).in_file(&args.input)?;
    let (width, height) = input.dimensions();
    let resolution = input.resolution();
    let size = PixelSize::resolve(args.mpp, resolution, width, height).in_file(&args.input)?;
    let facts = InputFacts {
        file: args.input.display().to_string(),
        width,
        height,
        size,
    };
    match input {
        OpenedImage::Slide(slide) => {
            let scaled = ScaledSlide::new(*slide, size.mpp, args.level).in_file(&args.input)?;
            let level = Some(scaled.level());
            let to_input = scaled.to_level0();
            analyse(&args, &loaded, &scaled, facts, to_input, level, start)
        }
        OpenedImage::Decoded(..) if args.level.is_some_and(|l| l > 0) => {
            Err(CelnetError::InvalidParameter(format!(
                "{} has one resolution; --level applies to pyramidal TIFF and SVS files",
                args.input.display()
            )))
        }
        OpenedImage::Decoded(image, _) => {
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
        &loaded.classifier().with_tta(args.tta.tta()),
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

    let points = points_in_input(&tumour_points, to_input);
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
        evidence.push(ExplainedWindow {
            overlay_png: Some(name.clone()),
            ..ExplainedWindow::new(window, reason, to_input)
        });
        files.push(name);
    }
    let geojson_path = args.out.join("heatmap.geojson");
    let geojson = geojson(&heatmap, &points, &evidence, to_input).to_string();
    std::fs::write(&geojson_path, geojson).map_err(|e| CelnetError::io(&geojson_path, e))?;
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
        tta: Some(args.tta.tta()),
        files,
    };
    let summary = args.out.join("summary.json");
    let text = super::common::json_line(&report, &loaded.source, Some(start));
    std::fs::write(&summary, text).map_err(|e| CelnetError::io(&summary, e))?;
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
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
    save_image(&heatmap_picture(heatmap), &out.join("heatmap.png"))?;
    save_image(
        &overlay_picture(thumbnail, model_width, heatmap),
        &out.join("overlay.png"),
    )?;
    save_image(&tissue_picture(tissue), &out.join("tissue.png"))?;
    let csv_path = out.join("tiles.csv");
    std::fs::write(&csv_path, tiles_csv(heatmap, to_input))
        .map_err(|e| CelnetError::io(&csv_path, e))?;
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
