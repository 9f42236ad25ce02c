//! `celnet heatmap`: the probability of metastasis across a field of view or region, at the
//! model's scale, with the slide score, tumour points and exports for QuPath.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use celnet::error::FileContext;
use celnet::explain::render::{OVERLAY_OPACITY, evidence_overlay};
use celnet::input::save_image;
use celnet::slide::scan::{DENSE_TILE, EXACT_BATCH};
use celnet::slide::{
    Analysis, DEFAULT_STRIDE, DEFAULT_TOP_K, HeatmapReport, Mode, OpenedImage, ScanConfig,
};
use celnet::{CelnetError, Result};

use super::common::{
    ModelArgs, OutputFolder, PrintReport, TtaArgs, emit, json_line, work_progress,
};
use super::slide_eval::read_slide_model;

#[derive(clap::Args)]
pub struct Args {
    /// H&E image or slide: PNG, JPEG, TIFF, BMP or WebP, a TIFF, SVS or OME-TIFF slide, or a
    /// DICOM whole-slide image given as its folder or its files (one per level).
    #[arg(required = true, num_args = 1..)]
    input: Vec<PathBuf>,
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
    /// Largest tile side of the dense pass, in pixels at the model's scale (each tile adds 64 px
    /// of context on every side): smaller tiles hold less memory and cost more work on solid
    /// tissue. The page uses 768.
    #[arg(long, default_value_t = DENSE_TILE, value_parser = tile_side)]
    tile: usize,
    /// Windows scored per batch by --exact.
    #[arg(long, default_value_t = EXACT_BATCH)]
    batch_size: usize,
    /// Explain (CELM, default parameters) the windows of the K most probable tumour points.
    #[arg(long, default_value_t = DEFAULT_TOP_K)]
    top_k: usize,
    /// Also explain the window centred on X,Y (the input's full-resolution pixels); repeatable.
    #[arg(long = "explain-at", value_name = "X,Y", value_parser = parse_point)]
    explain_at: Vec<(f64, f64)>,
    #[command(flatten)]
    tta: TtaArgs,
    /// Slide model (lesion thresholds and coefficients, from `celnet slide-fit`) for weights
    /// other than the shipped ones; the shipped model otherwise.
    #[arg(long)]
    slide_model: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

fn tile_side(text: &str) -> std::result::Result<usize, String> {
    let range = 96..=4096;
    match text.parse::<usize>() {
        Ok(side) if range.contains(&side) => Ok(side),
        _ => Err(format!(
            "expected a side from {} px (one window) to {} px",
            range.start(),
            range.end()
        )),
    }
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

impl PrintReport for HeatmapReport {
    fn print_text(&self) {
        println!(
            "{} ({}): {}x{} px at {} µm/px ({}), scaled by {:.3}; {} windows at stride {} in {:.0}% \
             tissue",
            self.file,
            self.format,
            self.width,
            self.height,
            self.mpp,
            self.mpp_source.describe(),
            self.factor,
            self.windows,
            self.stride,
            100.0 * self.tissue_fraction
        );
        if let (Some(seconds), Some(rate)) = (self.scoring.seconds, self.scoring.windows_per_second)
        {
            let memory = self
                .scoring
                .peak_memory_mb
                .map_or(String::new(), |mb| format!(", peak memory {mb:.0} MB"));
            println!(
                "scored in {seconds:.1} s ({rate:.0} windows/s, {} tile(s)){memory}",
                self.scoring.tiles
            );
        }
        match (self.slide_probability, self.slide_score) {
            (Some(probability), Some(score)) => println!(
                "slide probability {probability:.3} ({}); slide score (maximum) {score:.4}; {} \
                 lesion(s), {} tumour point(s)",
                self.slide_category.describe(),
                self.lesions.len(),
                self.points.len()
            ),
            _ => println!("no tissue found: nothing scored"),
        }
        for l in &self.lesions {
            println!(
                "  lesion {} ({}): {:.2} mm across, {:.3} mm², peak {:.4} at ({:.0}, {:.0}), \
                 {} window(s)",
                l.id,
                l.category.describe(),
                l.diameter_mm,
                l.area_mm2,
                l.peak.probability,
                l.peak.x,
                l.peak.y,
                l.windows
            );
        }
        if !self.points.is_empty() {
            println!("tumour points:");
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

/// The files every run writes besides the evidence overlays.
const OUTPUTS: [&str; 6] = [
    "heatmap.png",
    "overlay.png",
    "tissue.png",
    "tiles.csv",
    "heatmap.geojson",
    "summary.json",
];

pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let loaded = args.model.load()?;
    let slide_model = args
        .slide_model
        .as_deref()
        .map(|path| read_slide_model(Some(path)))
        .transpose()?;
    let (name, paths) = slide_files(&args.input)?;
    let readers = paths
        .iter()
        .map(|path| {
            File::open(path)
                .map(BufReader::new)
                .map_err(|e| CelnetError::io(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let input = OpenedImage::open_files(readers).in_file(&name)?;
    let config = ScanConfig {
        stride: args.stride,
        mode: if args.exact { Mode::Exact } else { Mode::Dense },
        batch: args.batch_size,
        tile: args.tile,
        tta: args.tta.tta(),
    };
    let mut analysis =
        Analysis::new(Rc::new(input), args.mpp, args.level, config).in_file(&name)?;
    if let Some(model) = slide_model {
        analysis.set_slide_model(model);
    }

    let bar = work_progress("windows");
    let scoring = Instant::now();
    pollster::block_on(analysis.run(&loaded.classifier(), |done| {
        bar.set_length(done.total_pixels);
        bar.set_position(done.pixels);
        bar.set_message(format!("{}/{}", done.windows, done.total_windows));
    }))?;
    let scoring = scoring.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let mut wanted = analysis.top_windows(args.top_k);
    for &(x, y) in &args.explain_at {
        wanted.push(analysis.requested_window(x, y).map_err(|e| match e {
            CelnetError::InvalidParameter(m) => {
                CelnetError::InvalidParameter(format!("--explain-at {m}"))
            }
            other => other,
        })?);
    }
    let explained = pollster::block_on(analysis.explain(&loaded.explainer(), &wanted))?;

    let out = OutputFolder::create(&args.out, "summary.json")?;
    let mut files: Vec<String> = OUTPUTS.map(String::from).to_vec();
    for (i, window) in explained.iter().enumerate() {
        let name = format!("evidence-{}.png", i + 1);
        let e = &window.explanation;
        save_image(
            &evidence_overlay(&window.image, &e.celm, &e.mask, OVERLAY_OPACITY),
            &out.path(&name),
        )?;
        files.push(name);
    }
    let mut report = HeatmapReport {
        files,
        ..analysis.report(name.clone())
    };
    report.scoring.seconds = Some(scoring);
    report.scoring.windows_per_second = Some(report.windows as f64 / scoring.max(1e-9));
    report.scoring.peak_memory_mb = peak_memory_mb();
    for (entry, name) in report
        .evidence
        .iter_mut()
        .zip(&report.files[OUTPUTS.len()..])
    {
        entry.overlay_png = Some(name.clone());
    }
    write_outputs(&out, &analysis)?;
    out.write(
        "heatmap.geojson",
        analysis.geojson(&report.lesions).to_string().as_bytes(),
    )?;
    let summary = json_line(&report, &loaded.source, Some(start));
    out.write("summary.json", summary.as_bytes())?;
    out.commit()?;
    emit(&report, args.json, &loaded.source, Some(start));
    Ok(())
}

/// The name a slide is reported by, and its files: a file as it is; a folder's DICOM files (a
/// slide's levels), sorted; several files as one slide.
fn slide_files(inputs: &[PathBuf]) -> Result<(String, Vec<PathBuf>)> {
    match inputs {
        [one] if one.is_dir() => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(one)
                .map_err(|e| CelnetError::io(one, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.is_file() && is_dicom(path))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(CelnetError::InvalidParameter(format!(
                    "{}: the folder holds no DICOM files; give an image or slide file, or the \
                     folder of a DICOM whole-slide image",
                    one.display()
                )));
            }
            Ok((one.display().to_string(), files))
        }
        [one] => Ok((one.display().to_string(), vec![one.clone()])),
        [first, rest @ ..] => Ok((
            format!("{} and {} more file(s)", first.display(), rest.len()),
            inputs.to_vec(),
        )),
        [] => Err(CelnetError::InvalidParameter("no input given".into())),
    }
}

/// Whether the file starts as a DICOM file does: 128 bytes of preamble, then `DICM`.
fn is_dicom(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    File::open(path).is_ok_and(|mut f| f.read_exact(&mut head).is_ok() && &head[128..] == b"DICM")
}

/// The process's peak resident memory in MB (`VmHWM`), where the system reports it (Linux).
fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Writes the pictures and the window table.
fn write_outputs<R: std::io::Read + std::io::Seek>(
    out: &OutputFolder,
    analysis: &Analysis<R>,
) -> Result<()> {
    save_image(&analysis.heatmap_picture(), &out.path("heatmap.png"))?;
    save_image(&analysis.overlay_picture(), &out.path("overlay.png"))?;
    save_image(&analysis.tissue_picture(), &out.path("tissue.png"))?;
    out.write("tiles.csv", analysis.tiles_csv().as_bytes())
}
