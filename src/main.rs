//! The `celnet` command line: info, predict, explain, train, eval, average, the localisation
//! study (mosaic, localize-eval, localize-tune, faithfulness) and serve.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use celnet::data::{PatchSet, load_split};
use celnet::explain::{CelmParams, Engine, sigmoid};
use celnet::faithfulness::{DeletionOptions, Fill, curve_area, deletion_curve, random_map};
use celnet::guided::ReluKind;
use celnet::input::decode_image;
use celnet::localize::{Grid, Method, PreparedGlimpse, Report, evaluate, tune};
use celnet::metrics::{Confusion, roc_curve};
use celnet::model::GLIMPSE;
use celnet::mosaic::{self, MosaicOptions};
use celnet::train::{OptimizerKind, TrainOptions, train, validate};
use celnet::{CelnetError, Result, plot, render, serve, weights};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "celnet",
    version,
    about = "CELNet + CELM: metastasis detection and evidence maps for H&E glimpses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// Burn's wgpu backend (Vulkan, Metal or DX12).
    Wgpu,
}

#[derive(Args)]
struct ModelArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendChoice,
    /// Weights file (burnpack); the embedded default model when absent.
    #[arg(long)]
    weights: Option<PathBuf>,
}

#[derive(Args)]
struct CelmArgs {
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
    fn params(&self) -> CelmParams {
        CelmParams {
            alpha: self.alpha,
            beta: self.beta,
            threshold: self.threshold,
            sigma: self.sigma,
            ..CelmParams::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Describe the network: parameter count and the shapes of F2 and F3 for a 96x96 glimpse.
    Info {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Probability of metastasis for each image.
    Predict {
        /// PNG, JPEG, TIFF, BMP or WebP files, processed at native pixel size (~1 µm/px).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Evidence maps (CAM2, CAM3, CSM, CELM), mask, regions and an overlay for one image.
    Explain {
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
    },
    /// Train on PCam patch folders (ROOT/{train,valid}/{0,1}/*) or the PCam HDF5 files.
    Train(TrainArgs),
    /// Accuracy, AUC, confusion matrix and ROC curve on a split folder (DIR/0, DIR/1).
    Eval {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Where to write the ROC curve.
        #[arg(long, default_value = "roc.png")]
        roc: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Re-estimate the batch-norm statistics of a network on whole training patches.
    Recalibrate {
        /// Burnpack weights to start from.
        weights: PathBuf,
        /// A split folder (DIR/0, DIR/1), or a data root (as for `train`) whose train split is used.
        #[arg(long)]
        data: PathBuf,
        /// Batches of whole patches to run through the network.
        #[arg(long, default_value_t = 64)]
        batches: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output weights file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Average the weights of several networks from one training run (e.g. checkpoints).
    Average {
        /// Burnpack weight files.
        #[arg(required = true, num_args = 2..)]
        weights: Vec<PathBuf>,
        /// Output weights file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Mosaic glimpses with exact tumour masks: 3x3 centre crops of PCam patches.
    Mosaic {
        /// PCam split folder (SPLIT/0, SPLIT/1).
        #[arg(long)]
        from: PathBuf,
        /// Output folder (NNNNN.png, NNNNN_mask.png, manifest.json).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = MosaicOptions::default().n)]
        n: usize,
        #[arg(long, default_value_t = MosaicOptions::default().seed)]
        seed: u64,
        /// Share of glimpses without any tumour tile.
        #[arg(long, default_value_t = MosaicOptions::default().normal_share)]
        normal_share: f64,
        /// Tumour glimpses get 1 to this many tumour tiles.
        #[arg(long, default_value_t = MosaicOptions::default().max_tumour_tiles)]
        max_tumour_tiles: usize,
        /// Use part K of N of each class's files (e.g. 1/2 to tune, 2/2 to test).
        #[arg(long, default_value = "1/1", value_parser = mosaic::parse_part)]
        part: (usize, usize),
    },
    /// Region precision and recall (the paper's 75% rule), pixel IoU and AUROC on mosaics.
    LocalizeEval {
        /// Folder of glimpses NAME.png with tumour masks NAME_mask.png.
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "celm")]
        method: Method,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        celm: CelmArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Grid-search each method's parameters on mosaics; score the tuned methods on --test.
    LocalizeTune {
        /// Tuning glimpses (with masks).
        dir: PathBuf,
        /// Held-out glimpses (with masks) to score the tuned parameters on.
        #[arg(long)]
        test: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Deletion curves: how fast the probability falls as the most evident pixels go.
    Faithfulness {
        /// Folder of glimpses (masks are not needed); those predicted positive are used.
        dir: PathBuf,
        #[arg(long, default_value_t = DeletionOptions::default().steps)]
        steps: usize,
        /// What deleted pixels become (this network reads a blurred glimpse as tumour).
        #[arg(long, value_enum, default_value = "white")]
        fill: Fill,
        /// Gaussian sigma (px) of the blurred copy for --fill blur.
        #[arg(long, default_value_t = DeletionOptions::default().blur_sigma)]
        blur_sigma: f32,
        /// Use at most this many positive glimpses.
        #[arg(long)]
        limit: Option<usize>,
        /// Seed of the random baseline map and of tie-breaking.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        celm: CelmArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Serve the browser client (index.html, www/, pkg/) to a browser on this machine.
    Serve {
        /// TCP port (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Interface to listen on; the default keeps the page on this machine.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Folder that holds index.html, www/ and pkg/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Data root: train/ and valid/ split folders, or the official PCam HDF5 files
    /// (camelyonpatch_level_2_split_{train,valid}_{x,y}.h5).
    #[arg(long)]
    data: PathBuf,
    /// Run folder (checkpoints, metrics.csv, curves.png, best.bpk); an existing run resumes.
    #[arg(long)]
    run: PathBuf,
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    lr: f64,
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerKind,
    #[arg(long, default_value_t = TrainOptions::default().weight_decay)]
    weight_decay: f64,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Training crop side: 96 for whole patches, 64 for random crops around the labelled centre.
    #[arg(long, default_value_t = TrainOptions::default().crop)]
    crop: usize,
    /// Start a new run from these weights (fine-tuning).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Use only the first N training patches of a random permutation (quick experiments).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Seconds between mid-epoch checkpoints.
    #[arg(long, default_value_t = TrainOptions::default().checkpoint_secs)]
    checkpoint_secs: u64,
    /// Colour jitter: per-channel gain 1 ± F and offset ± F/2 on each training patch.
    #[arg(long, default_value_t = TrainOptions::default().colour_jitter)]
    colour_jitter: f32,
    /// With --crop below the patch size: batches of whole training patches that re-estimate
    /// the batch-norm statistics before each validation (0 = off).
    #[arg(long, default_value_t = TrainOptions::default().bn_batches)]
    bn_batches: usize,
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendChoice,
}

fn device(choice: BackendChoice) -> Result<Device> {
    match choice {
        BackendChoice::Flex => Ok(Device::flex()),
        BackendChoice::Wgpu => Device::wgpu_options().init().map_err(|e| {
            CelnetError::Backend(format!(
                "no usable wgpu adapter ({e}); install a Vulkan driver (e.g. mesa-vulkan-drivers) or use --backend flex"
            ))
        }),
    }
}

fn backend_name(choice: BackendChoice) -> &'static str {
    match choice {
        BackendChoice::Flex => "flex",
        BackendChoice::Wgpu => "wgpu",
    }
}

fn engine(args: &ModelArgs) -> Result<Engine> {
    let device = device(args.backend)?;
    let model = match &args.weights {
        Some(path) => weights::load_file(path, &device)?,
        None => weights::load_default(&device)?,
    };
    Ok(Engine::new(model, &device))
}

fn weights_name(args: &ModelArgs) -> String {
    args.weights.as_ref().map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    )
}

fn read_image(path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| CelnetError::io(path, e))?;
    decode_image(&bytes)
}

fn write_png(image: &image::RgbImage, path: &Path) -> Result<()> {
    image
        .save(path)
        .map_err(|e| CelnetError::Dataset(format!("{}: {e}", path.display())))
}

fn info(json: bool, args: &ModelArgs) -> Result<()> {
    let engine = engine(args)?;
    let model = engine.model();
    let x = Tensor::<4>::zeros([1, 3, GLIMPSE, GLIMPSE], engine.device());
    let f2 = model.features2(x, ReluKind::Standard);
    let f3 = model.features3(f2.clone(), ReluKind::Standard);
    let report = json!({
        "params": model.learnable_params(),
        "running_statistics": model.num_params() - model.learnable_params(),
        "input_shape": [1, 3, GLIMPSE, GLIMPSE],
        "f2_shape": f2.dims(),
        "f3_shape": f3.dims(),
        "backend": backend_name(args.backend),
        "weights": weights_name(args),
    });
    if json {
        println!("{report}");
    } else {
        println!(
            "CELNet: {} learnable parameters (+{} batch-norm running statistics)",
            model.learnable_params(),
            model.num_params() - model.learnable_params()
        );
        println!("F2 (CAM2 layer) for a 96x96 glimpse: {:?}", f2.dims());
        println!("F3 (CAM3 layer) for a 96x96 glimpse: {:?}", f3.dims());
        println!(
            "backend: {}, weights: {}",
            backend_name(args.backend),
            weights_name(args)
        );
    }
    Ok(())
}

fn predict(images: &[PathBuf], json: bool, args: &ModelArgs) -> Result<bool> {
    let engine = engine(args)?;
    let mut all_ok = true;
    let mut results = Vec::new();
    for path in images {
        let start = Instant::now();
        let outcome = read_image(path).and_then(|img| pollster::block_on(engine.predict(&img)));
        let file = path.display().to_string();
        match outcome {
            Ok(logit) => {
                let probability = sigmoid(logit);
                let label = if probability >= 0.5 {
                    "metastasis"
                } else {
                    "normal"
                };
                let ms = start.elapsed().as_secs_f64() * 1e3;
                if !json {
                    println!("{file}\t{probability:.4}\t{label}\t{ms:.1} ms");
                }
                results.push(
                    json!({"file": file, "logit": logit, "probability": probability,
                                    "label": label, "milliseconds": ms}),
                );
            }
            Err(e) => {
                all_ok = false;
                if !json {
                    eprintln!("{file}: {e}");
                }
                results.push(json!({"file": file, "error": e.to_string()}));
            }
        }
    }
    if json {
        let report = if results.len() == 1 {
            results.remove(0)
        } else {
            json!({"results": results})
        };
        println!("{report}");
    }
    Ok(all_ok)
}

fn explain(
    image_path: &Path,
    out: &Path,
    params: CelmParams,
    raw: bool,
    args: &ModelArgs,
) -> Result<()> {
    params.validate()?;
    let start = Instant::now();
    let engine = engine(args)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let image = read_image(image_path)?;
    let decode_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let evidence = pollster::block_on(engine.evidence(&image))?;
    let gradients_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let explanation = evidence.fuse(&params)?;
    let fusion_ms = t.elapsed().as_secs_f64() * 1e3;

    std::fs::create_dir_all(out).map_err(|e| CelnetError::io(out, e))?;
    write_png(&image, &out.join("input.png"))?;
    for (name, map) in explanation.named_maps() {
        write_png(&render::colormap(map), &out.join(format!("{name}.png")))?;
    }
    write_png(
        &render::mask_image(&explanation.mask),
        &out.join("mask.png"),
    )?;
    let mut overlay = render::overlay(&image, &explanation.celm, render::OVERLAY_OPACITY);
    render::outline(&mut overlay, &explanation.mask, render::OUTLINE_COLOUR);
    write_png(&overlay, &out.join("overlay.png"))?;
    let mut files = vec![
        "input.png",
        "cam2.png",
        "cam3.png",
        "csm.png",
        "mc.png",
        "celm.png",
        "mask.png",
        "overlay.png",
    ];
    if raw {
        let maps = json!({
            "width": image.width(),
            "height": image.height(),
            "cam2": explanation.cam2.data,
            "cam3": explanation.cam3.data,
            "csm": explanation.csm.data,
            "mc": explanation.mc.data,
            "celm": explanation.celm.data,
        });
        let maps_path = out.join("maps.json");
        std::fs::write(&maps_path, maps.to_string()).map_err(|e| CelnetError::io(&maps_path, e))?;
        files.push("maps.json");
    }

    let label = if explanation.probability >= 0.5 {
        "metastasis"
    } else {
        "normal"
    };
    let report = json!({
        "file": image_path.display().to_string(),
        "width": image.width(),
        "height": image.height(),
        "logit": explanation.logit,
        "probability": explanation.probability,
        "label": label,
        "params": explanation.params,
        "regions": explanation.regions,
        "backend": backend_name(args.backend),
        "weights": weights_name(args),
        "timings_ms": {
            "model_load": load_ms,
            "decode": decode_ms,
            "gradients": gradients_ms,
            "fusion": fusion_ms,
            "total": start.elapsed().as_secs_f64() * 1e3,
        },
        "files": files,
    });
    let json_path = out.join("explain.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report).expect("json"),
    )
    .map_err(|e| CelnetError::io(&json_path, e))?;
    println!(
        "{}: probability {:.4} ({label}), {} region(s); maps in {}",
        image_path.display(),
        explanation.probability,
        explanation.regions.len(),
        out.display()
    );
    Ok(())
}

fn run_train(args: &TrainArgs) -> Result<()> {
    let device = device(args.backend)?;
    let t = Instant::now();
    let mut train_set = load_split(&args.data, "train")?;
    let valid_set = load_split(&args.data, "valid")?;
    if let Some(limit) = args.train_limit {
        train_set = train_set.random_subset(limit, args.seed);
    }
    eprintln!(
        "loaded {} training patches {:?} and {} validation patches {:?} in {:.1} s",
        train_set.len(),
        train_set.class_counts(),
        valid_set.len(),
        valid_set.class_counts(),
        t.elapsed().as_secs_f64()
    );
    let options = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        optimizer: args.optimizer,
        weight_decay: args.weight_decay,
        seed: args.seed,
        crop: args.crop,
        checkpoint_secs: args.checkpoint_secs,
        colour_jitter: args.colour_jitter,
        bn_batches: args.bn_batches,
    };
    let init = match &args.init {
        Some(path) => Some(weights::load_file(path, &device)?),
        None => None,
    };
    let state = train(&train_set, &valid_set, options, &args.run, &device, init)?;
    if let (Some(best), Some(epoch)) = (state.best_valid_loss, state.best_epoch) {
        eprintln!(
            "best validation loss {best:.4} at epoch {epoch}; weights in {}",
            args.run.join("best.bpk").display()
        );
    }
    Ok(())
}

fn eval(dir: &Path, json: bool, roc: &Path, args: &ModelArgs) -> Result<()> {
    let engine = engine(args)?;
    let set = PatchSet::from_folder(dir)?;
    let t = Instant::now();
    let validation = validate(&engine, &set, 128)?;
    let seconds = t.elapsed().as_secs_f64();
    let confusion = Confusion::at(&validation.probabilities, &set.labels, 0.5);
    let curve = roc_curve(&validation.probabilities, &set.labels);
    plot::roc_curve(&curve, validation.auc, roc)?;
    let report = json!({
        "n": set.len(),
        "accuracy": validation.accuracy,
        "auc": validation.auc,
        "loss": validation.loss,
        "sensitivity": confusion.sensitivity(),
        "specificity": confusion.specificity(),
        "confusion": confusion,
        "roc_png": roc.display().to_string(),
        "backend": backend_name(args.backend),
        "weights": weights_name(args),
        "seconds": seconds,
    });
    if json {
        println!("{report}");
    } else {
        println!(
            "{} patches: accuracy {:.4}, AUC {:.4}, loss {:.4}",
            set.len(),
            validation.accuracy,
            validation.auc,
            validation.loss
        );
        println!(
            "confusion (rows = truth 0/1, columns = predicted 0/1): [[{}, {}], [{}, {}]]",
            confusion.true_negative,
            confusion.false_positive,
            confusion.false_negative,
            confusion.true_positive
        );
        println!("ROC curve: {}", roc.display());
    }
    Ok(())
}

fn average(files: &[PathBuf], out: &Path) -> Result<()> {
    let device = Device::flex();
    let models = files
        .iter()
        .map(|f| weights::load_file(f, &device))
        .collect::<Result<Vec<_>>>()?;
    weights::save_file(celnet::train::average_weights(models)?, out)?;
    println!("averaged {} networks into {}", files.len(), out.display());
    Ok(())
}

fn recalibrate(
    file: &Path,
    data: &Path,
    batches: usize,
    batch_size: usize,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let device = Device::flex();
    let model = weights::load_file(file, &device)?;
    // A split folder itself, or a data root (folders or the PCam HDF5 files) whose train split
    // load_split finds.
    let set = if data.join("0").is_dir() {
        PatchSet::from_folder(data)?
    } else {
        load_split(data, "train")?
    };
    let start = Instant::now();
    let model =
        celnet::train::recalibrate_batch_norm(model, &set, batches, batch_size, seed, &device)?;
    weights::save_file(model, out)?;
    println!(
        "batch-norm statistics from {} patches of {} in {:.0} s: {}",
        batches * batch_size,
        data.display(),
        start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn make_mosaics(from: &Path, out: &Path, options: &MosaicOptions) -> Result<()> {
    let manifest = mosaic::build(from, out, options)?;
    let tumour = manifest
        .glimpses
        .iter()
        .filter(|g| !g.tumour_tiles.is_empty())
        .count();
    println!(
        "{} mosaics ({tumour} with tumour) from {} part {}/{} in {}",
        manifest.glimpses.len(),
        from.display(),
        options.part.0,
        options.part.1,
        out.display()
    );
    Ok(())
}

/// A progress bar on stderr for `len` steps.
fn progress(len: usize, what: &str) -> indicatif::ProgressBar {
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

/// Explains every labelled glimpse of `dir` once, with CSMs for `sigmas` ready.
fn prepare_glimpses(engine: &Engine, dir: &Path, sigmas: &[f32]) -> Result<Vec<PreparedGlimpse>> {
    let glimpses = mosaic::load_labelled(dir)?;
    let bar = progress(glimpses.len(), "explaining");
    let prepared = glimpses
        .into_iter()
        .map(|g| {
            let evidence = pollster::block_on(engine.evidence(&g.image))?;
            bar.inc(1);
            PreparedGlimpse::new(evidence, g.truth, sigmas)
                .map_err(|e| CelnetError::Dataset(format!("{}: {e}", g.name)))
        })
        .collect();
    bar.finish_and_clear();
    prepared
}

fn print_reports(title: &str, reports: &[Report]) {
    println!("{title}");
    println!(
        "| method | precision | recall | F1 | pixel IoU | pixel AUROC | a | b | threshold | sigma |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} |",
            r.method.title(),
            r.precision,
            r.recall,
            r.f1,
            r.iou,
            r.pixel_auroc.map_or("-".into(), |a| format!("{a:.3}")),
            r.params.alpha,
            r.params.beta,
            r.params.threshold,
            r.params.sigma
        );
    }
}

fn localize_eval(
    dir: &Path,
    method: Method,
    params: &CelmParams,
    json: bool,
    args: &ModelArgs,
) -> Result<()> {
    params.validate()?;
    let engine = engine(args)?;
    let start = Instant::now();
    let glimpses = prepare_glimpses(&engine, dir, &[params.sigma])?;
    let report = evaluate(&glimpses, method, params)?;
    if json {
        let mut value = serde_json::to_value(&report).expect("report serialises");
        value["seconds"] = json!(start.elapsed().as_secs_f64());
        value["backend"] = json!(backend_name(args.backend));
        value["weights"] = json!(weights_name(args));
        println!("{value}");
    } else {
        print_reports(
            &format!("{} glimpses in {}", report.n, dir.display()),
            &[report],
        );
    }
    Ok(())
}

fn localize_tune(dir: &Path, test: Option<&Path>, json: bool, args: &ModelArgs) -> Result<()> {
    let engine = engine(args)?;
    let grid = Grid::default();
    let base = CelmParams::default();
    let start = Instant::now();
    let tuning = prepare_glimpses(&engine, dir, &grid.sigmas)?;
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
    let tested = match test {
        Some(test_dir) => {
            let sigmas: Vec<f32> = tuned.iter().map(|r| r.params.sigma).collect();
            let held_out = prepare_glimpses(&engine, test_dir, &sigmas)?;
            tuned
                .iter()
                .map(|r| evaluate(&held_out, r.method, &r.params))
                .collect::<Result<Vec<_>>>()?
        }
        None => Vec::new(),
    };
    if json {
        println!(
            "{}",
            json!({
                "tuning_dir": dir.display().to_string(),
                "test_dir": test.map(|t| t.display().to_string()),
                "grid": grid,
                "tuned": tuned,
                "test": tested,
                "backend": backend_name(args.backend),
                "weights": weights_name(args),
                "seconds": start.elapsed().as_secs_f64(),
            })
        );
    } else {
        print_reports(
            &format!("tuned on {} ({} glimpses)", dir.display(), tuning.len()),
            &tuned,
        );
        if let Some(test_dir) = test {
            print_reports(&format!("held out: {}", test_dir.display()), &tested);
        }
    }
    Ok(())
}

fn faithfulness(
    dir: &Path,
    options: &DeletionOptions,
    limit: Option<usize>,
    seed: u64,
    params: &CelmParams,
    json: bool,
    args: &ModelArgs,
) -> Result<()> {
    params.validate()?;
    let engine = engine(args)?;
    let start = Instant::now();
    let files = mosaic::list_glimpses(dir)?;
    // Every localisation method's map, then a random map as the baseline.
    let names: Vec<&str> = Method::ALL
        .iter()
        .map(|m| m.name())
        .chain(["random"])
        .collect();
    let mut curves: Vec<Vec<Vec<f32>>> = vec![Vec::new(); names.len()];
    let bar = progress(files.len(), "deleting");
    let mut positives = 0;
    for (i, path) in files.iter().enumerate() {
        bar.inc(1);
        if limit.is_some_and(|l| positives >= l) {
            break;
        }
        let image = read_image(path)?;
        let explanation = pollster::block_on(engine.explain(&image, params))?;
        if explanation.probability < 0.5 {
            continue;
        }
        positives += 1;
        let random = random_map(
            image.width() as usize,
            image.height() as usize,
            seed + i as u64,
        );
        let maps = Method::ALL
            .iter()
            .map(|m| m.map_of(&explanation))
            .chain([&random]);
        for (curve, map) in curves.iter_mut().zip(maps) {
            curve.push(pollster::block_on(deletion_curve(
                &engine,
                &image,
                map,
                options,
                seed + i as u64,
            ))?);
        }
    }
    bar.finish_and_clear();
    if positives == 0 {
        return Err(CelnetError::Dataset(format!(
            "no glimpse in {} is predicted positive; deletion curves need positive calls",
            dir.display()
        )));
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let methods: Vec<_> = names
        .iter()
        .zip(&curves)
        .map(|(name, per_glimpse)| {
            let areas: Vec<f64> = per_glimpse.iter().map(|c| curve_area(c)).collect();
            let relative: Vec<f64> = per_glimpse
                .iter()
                .map(|c| {
                    let first = f64::from(c[0]).max(1e-6);
                    curve_area(c) / first
                })
                .collect();
            let mean_curve: Vec<f64> = (0..=options.steps.max(1))
                .map(|k| {
                    mean(
                        &per_glimpse
                            .iter()
                            .map(|c| f64::from(c[k]))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            json!({
                "method": name,
                "auc": mean(&areas),
                "relative_auc": mean(&relative),
                "mean_curve": mean_curve,
            })
        })
        .collect();
    let report = json!({
        "n": positives,
        "glimpses": files.len(),
        "steps": options.steps,
        "fill": options.fill,
        "blur_sigma": options.blur_sigma,
        "params": params,
        "methods": methods,
        "backend": backend_name(args.backend),
        "weights": weights_name(args),
        "seconds": start.elapsed().as_secs_f64(),
    });
    if json {
        println!("{report}");
    } else {
        println!(
            "deletion curves over {positives} positive glimpses of {} (lower is more faithful):",
            dir.display()
        );
        for m in &methods {
            println!(
                "  {:<10} AUC {:.4}   relative to the first point {:.4}",
                m["method"].as_str().unwrap_or(""),
                m["auc"].as_f64().unwrap_or(f64::NAN),
                m["relative_auc"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

fn run_serve(root: &Path, host: &str, port: u16) -> Result<()> {
    serve::serve(root, &format!("{host}:{port}"), |address| {
        println!(
            "celnet: serving {} at http://{address}/ (Ctrl-C to stop)",
            root.display()
        );
        // Scripts wait for this line.
        let _ = std::io::stdout().flush();
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Info { json, model } => info(*json, model).map(|_| true),
        Command::Predict {
            images,
            json,
            model,
        } => predict(images, *json, model),
        Command::Explain {
            image,
            out,
            raw,
            celm,
            model,
        } => explain(image, out, celm.params(), *raw, model).map(|_| true),
        Command::Train(args) => run_train(args).map(|_| true),
        Command::Eval {
            dir,
            json,
            roc,
            model,
        } => eval(dir, *json, roc, model).map(|_| true),
        Command::Recalibrate {
            weights,
            data,
            batches,
            batch_size,
            seed,
            out,
        } => recalibrate(weights, data, *batches, *batch_size, *seed, out).map(|_| true),
        Command::Average { weights, out } => average(weights, out).map(|_| true),
        Command::Mosaic {
            from,
            out,
            n,
            seed,
            normal_share,
            max_tumour_tiles,
            part,
        } => {
            let options = MosaicOptions {
                n: *n,
                seed: *seed,
                normal_share: *normal_share,
                max_tumour_tiles: *max_tumour_tiles,
                part: *part,
            };
            make_mosaics(from, out, &options).map(|_| true)
        }
        Command::LocalizeEval {
            dir,
            method,
            json,
            celm,
            model,
        } => localize_eval(dir, *method, &celm.params(), *json, model).map(|_| true),
        Command::LocalizeTune {
            dir,
            test,
            json,
            model,
        } => localize_tune(dir, test.as_deref(), *json, model).map(|_| true),
        Command::Faithfulness {
            dir,
            steps,
            fill,
            blur_sigma,
            limit,
            seed,
            json,
            celm,
            model,
        } => {
            let options = DeletionOptions {
                steps: *steps,
                fill: *fill,
                blur_sigma: *blur_sigma,
            };
            faithfulness(dir, &options, *limit, *seed, &celm.params(), *json, model).map(|_| true)
        }
        Command::Serve { port, host, root } => run_serve(root, host, *port).map(|_| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
