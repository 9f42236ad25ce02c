//! `celnet heatmap`: the probability of metastasis across a field of view or region, at the
//! model's scale, with the slide score, tumour points and exports for QuPath.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use celnet::error::FileContext;
use celnet::explain::Map;
use celnet::explain::render::{OVERLAY_OPACITY, colormap, overlay};
use celnet::heatmap::{DEFAULT_STRIDE, Grid, Heatmap, Point, TissueMask};
use celnet::input::{decode_image, save_image};
use celnet::model::GLIMPSE;
use celnet::scale::{MppSource, PixelSize, file_resolution, to_model_scale};
use celnet::{CelnetError, Result};

use super::common::{ModelArgs, Report, emit, progress};

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
    /// Windows scored per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// What `heatmap` found; coordinates are full-resolution pixels of the input.
#[derive(Serialize)]
struct HeatmapReport {
    file: String,
    width: u32,
    height: u32,
    mpp: f64,
    mpp_source: MppSource,
    /// Input pixels are scaled by this factor to reach the model's scale.
    factor: f64,
    stride: usize,
    grid: [usize; 2],
    /// Windows scored (their centre lies in tissue).
    windows: usize,
    tissue_fraction: f64,
    /// The highest window probability; absent without tissue.
    slide_score: Option<f32>,
    points: Vec<Point>,
    mode: &'static str,
    files: Vec<&'static str>,
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
    }
}

pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let loaded = args.model.load()?;
    let bytes = std::fs::read(&args.input).map_err(|e| CelnetError::io(&args.input, e))?;
    let image = decode_image(&bytes).in_file(&args.input)?;
    let size = PixelSize::resolve(
        args.mpp,
        file_resolution(&bytes),
        image.width(),
        image.height(),
    )
    .in_file(&args.input)?;
    let scaled = to_model_scale(&image, &size);
    let tissue = TissueMask::of(&scaled);
    let grid = Grid::new(
        scaled.width() as usize,
        scaled.height() as usize,
        args.stride,
    )?;
    let bar = progress(grid.cols * grid.rows, "windows");
    let heatmap = pollster::block_on(Heatmap::exact(
        &loaded.classifier(),
        &scaled,
        grid,
        &tissue,
        args.batch_size,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    ))?;
    bar.finish_and_clear();

    // Back to the input's pixels.
    let to_input = size.factor().recip();
    let points = heatmap
        .tumour_points()
        .into_iter()
        .map(|p| Point {
            x: p.x * to_input,
            y: p.y * to_input,
            ..p
        })
        .collect();
    let files = write_outputs(&args.out, &scaled, &tissue, &heatmap, to_input)?;
    let report = HeatmapReport {
        file: args.input.display().to_string(),
        width: image.width(),
        height: image.height(),
        mpp: size.mpp,
        mpp_source: size.source,
        factor: size.factor(),
        stride: grid.stride,
        grid: [grid.cols, grid.rows],
        windows: heatmap.scored(),
        tissue_fraction: tissue.fraction(),
        slide_score: heatmap.slide_score(),
        points,
        mode: "exact",
        files,
    };
    let summary = args.out.join("summary.json");
    let text = super::common::json_line(&report, &loaded.source, Some(start));
    std::fs::write(&summary, text).map_err(|e| CelnetError::io(&summary, e))?;
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
}

/// The probability under each model-scale pixel: that of the nearest window centre, 0 on
/// background.
fn probability_map(heatmap: &Heatmap, width: usize, height: usize) -> Map {
    let grid = heatmap.grid;
    let nearest = |v: usize, n: usize| {
        let cell = (v as f64 - (GLIMPSE / 2) as f64) / grid.stride as f64;
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

/// Writes the pictures, the window table and the GeoJSON; returns their names.
fn write_outputs(
    out: &Path,
    scaled: &image::RgbImage,
    tissue: &TissueMask,
    heatmap: &Heatmap,
    to_input: f64,
) -> Result<Vec<&'static str>> {
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
    let map = probability_map(heatmap, scaled.width() as usize, scaled.height() as usize);
    save_image(
        &overlay(scaled, &map, OVERLAY_OPACITY),
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
    let mut features = Vec::new();
    for row in 0..grid.rows {
        for col in 0..grid.cols {
            let Some(p) = heatmap.get(col, row) else {
                continue;
            };
            let (x, y) = grid.origin(col, row);
            let (x, y) = (x as f64 * to_input, y as f64 * to_input);
            csv.push_str(&format!("{x:.1},{y:.1},{side:.1},{side:.1},{p:.6}\n"));
            features.push(json!({
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]],
                },
                "properties": {
                    "objectType": "tile",
                    "name": "window",
                    "measurements": { "probability": p },
                },
            }));
        }
    }
    for p in heatmap.tumour_points() {
        features.push(json!({
            "type": "Feature",
            "geometry": { "type": "Point", "coordinates": [p.x * to_input, p.y * to_input] },
            "properties": {
                "objectType": "annotation",
                "name": "tumour point",
                "classification": { "name": "Tumor", "color": [200, 0, 0] },
                "measurements": { "probability": p.probability },
            },
        }));
    }
    let csv_path = out.join("windows.csv");
    std::fs::write(&csv_path, csv).map_err(|e| CelnetError::io(&csv_path, e))?;
    let geojson = json!({ "type": "FeatureCollection", "features": features });
    let geojson_path = out.join("heatmap.geojson");
    std::fs::write(&geojson_path, geojson.to_string())
        .map_err(|e| CelnetError::io(&geojson_path, e))?;
    Ok(vec![
        "heatmap.png",
        "overlay.png",
        "tissue.png",
        "windows.csv",
        "heatmap.geojson",
        "summary.json",
    ])
}
