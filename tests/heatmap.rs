//! `celnet heatmap` on regions assembled from the shipped PCam fixtures.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use celnet::network::classifier::Classifier;
use celnet::slide::scan::DENSE_TILE;
use celnet::slide::{Heatmap, Progress, Scan, TissueMask, WindowGrid};
use image::{Rgb, RgbImage};
use serde_json::Value;

mod common;
use common::{FIXTURES, celnet, json_stdout, scratch};

fn fixture(label: u8, index: usize) -> RgbImage {
    let dir = Path::new(FIXTURES).join(label.to_string());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    image::open(&files[index]).unwrap().to_rgb8()
}

/// A 288x192 region at 1 µm/px: two rows of three patches, the right column bare glass. The
/// patches are label-1 ones, whose centres hold tumour and so are tissue whatever else a patch
/// shows (a normal lymph-node patch may be fat at its centre, and is rightly skipped).
fn region() -> RgbImage {
    let mut region = RgbImage::from_pixel(288, 192, Rgb([244, 244, 242]));
    let tiles = [
        (0, 0, fixture(1, 0)),
        (96, 0, fixture(1, 1)),
        (0, 96, fixture(1, 2)),
        (96, 96, fixture(1, 3)),
    ];
    for (x, y, tile) in tiles {
        image::imageops::replace(&mut region, &tile, x, y);
    }
    region
}

/// A 384x384 region at 1 µm/px: sixteen fixture patches, label 1 on the diagonal band.
fn patchwork() -> RgbImage {
    let mut region = RgbImage::new(384, 384);
    for i in 0..16usize {
        let (col, row) = (i % 4, i / 4);
        let label = u8::from(col.abs_diff(row) <= 1);
        let patch = fixture(label, i);
        image::imageops::replace(&mut region, &patch, col as i64 * 96, row as i64 * 96);
    }
    region
}

/// Mean, 99th percentile and largest absolute difference between the windows both scored.
fn differences(a: &Heatmap, b: &Heatmap) -> (f32, f32, f32) {
    let mut d: Vec<f32> = a
        .probabilities
        .iter()
        .zip(&b.probabilities)
        .filter_map(|(a, b)| Some((a.as_ref()? - b.as_ref()?).abs()))
        .collect();
    d.sort_by(f32::total_cmp);
    let mean = d.iter().sum::<f32>() / d.len() as f32;
    (
        mean,
        d[(d.len() * 99 / 100).min(d.len() - 1)],
        d[d.len() - 1],
    )
}

/// Checks what QuPath's GeoJSON reader (qupath-core `PathObjectTypeAdapters`) relies on: a
/// FeatureCollection of Features, Polygon geometries with one closed ring or Points, an
/// `objectType` it knows, `classification` as `{name, color: [r, g, b]}`, `measurements` as an
/// object of numbers.
fn assert_qupath_geojson(geojson: &Value) {
    assert_eq!(geojson["type"], "FeatureCollection");
    for feature in geojson["features"].as_array().unwrap() {
        assert_eq!(feature["type"], "Feature");
        let geometry = &feature["geometry"];
        match geometry["type"].as_str().unwrap() {
            "Polygon" => {
                let rings = geometry["coordinates"].as_array().unwrap();
                assert_eq!(rings.len(), 1);
                let ring = rings[0].as_array().unwrap();
                assert!(ring.len() >= 4 && ring.first() == ring.last(), "{ring:?}");
            }
            "MultiPolygon" => {
                for polygon in geometry["coordinates"].as_array().unwrap() {
                    for ring in polygon.as_array().unwrap() {
                        let ring = ring.as_array().unwrap();
                        assert!(ring.len() >= 5 && ring.first() == ring.last(), "{ring:?}");
                    }
                }
            }
            "Point" => assert_eq!(geometry["coordinates"].as_array().unwrap().len(), 2),
            other => panic!("geometry {other}"),
        }
        let properties = &feature["properties"];
        let object_type = properties["objectType"].as_str().unwrap();
        assert!(["annotation", "detection", "tile"].contains(&object_type));
        let classification = &properties["classification"];
        assert!(classification["name"].is_string());
        let color = classification["color"].as_array().unwrap();
        assert!(color.len() == 3 && color.iter().all(|c| c.as_u64().is_some_and(|c| c < 256)));
        for (_, value) in properties["measurements"].as_object().unwrap() {
            assert!(value.is_number());
        }
    }
}

fn rows(csv: &str) -> Vec<Vec<f64>> {
    csv.lines()
        .skip(1)
        .map(|line| line.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}

#[test]
fn exact_windows_score_like_predict_and_glass_is_never_scored() {
    let dir = scratch("heatmap");
    let input = dir.join("region.png");
    region().save(&input).unwrap();
    let out = dir.join("out");
    let report = json_stdout(&celnet(&[
        "heatmap",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mpp",
        "1.0",
        "--stride",
        "96",
        "--exact",
        "--json",
    ]));
    assert_eq!(report["mode"], "exact");
    assert_eq!(report["mpp_source"], "user");
    assert_eq!(
        report["factor"], 1.0,
        "1 µm/px is within the tolerance of the model's scale"
    );
    assert_eq!(report["grid"], serde_json::json!([3, 2]));
    assert_eq!(report["windows"], 4, "the two glass windows are not scored");

    let windows = rows(&std::fs::read_to_string(out.join("tiles.csv")).unwrap());
    assert_eq!(windows.len(), 4);
    assert!(
        windows.iter().all(|w| w[0] < 192.0),
        "a glass window was scored"
    );
    // Each window's probability is what `predict` gives the same 96x96 crop.
    let mut crops = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let crop =
            image::imageops::crop_imm(&region(), w[0] as u32, w[1] as u32, 96, 96).to_image();
        let path = dir.join(format!("crop{i}.png"));
        crop.save(&path).unwrap();
        crops.push(path);
    }
    let mut args = vec!["predict", "--json"];
    args.extend(crops.iter().map(|p| p.to_str().unwrap()));
    let predicted = celnet(&args);
    assert!(predicted.status.success());
    let stdout = String::from_utf8(predicted.stdout).unwrap();
    for (w, line) in windows.iter().zip(stdout.lines()) {
        let p: Value = serde_json::from_str(line).unwrap();
        let diff = (p["probability"].as_f64().unwrap() - w[4]).abs();
        assert!(
            diff < 1e-5,
            "window at ({}, {}): heatmap {} vs predict {}",
            w[0],
            w[1],
            w[4],
            p["probability"]
        );
    }
    let max = windows.iter().map(|w| w[4]).fold(0.0, f64::max);
    assert!((report["slide_score"].as_f64().unwrap() - max).abs() < 1e-5);

    let geojson: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("heatmap.geojson")).unwrap())
            .unwrap();
    assert_qupath_geojson(&geojson);
    let features = geojson["features"].as_array().unwrap();
    let points = features
        .iter()
        .filter(|f| f["geometry"]["type"] == "Point")
        .count();
    let tiles = features
        .iter()
        .filter(|f| f["properties"]["objectType"] == "tile")
        .count();
    assert_eq!(tiles, 4, "one tile per scored window");
    assert_eq!(points, report["points"].as_array().unwrap().len());
    // CELM of the top tumour points' windows: regions inside their window, in input pixels,
    // and in the GeoJSON.
    let evidence = report["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), points.min(3));
    let mut regions = 0;
    for w in evidence {
        let (x, y) = (w["x"].as_f64().unwrap(), w["y"].as_f64().unwrap());
        assert!(out.join(w["overlay_png"].as_str().unwrap()).is_file());
        for r in w["regions"].as_array().unwrap() {
            regions += 1;
            assert!(r["x0"].as_f64().unwrap() >= x && r["x1"].as_f64().unwrap() <= x + 96.0);
            assert!(r["y0"].as_f64().unwrap() >= y && r["y1"].as_f64().unwrap() <= y + 96.0);
        }
    }
    let celm_features = features
        .iter()
        .filter(|f| f["properties"]["name"] == "CELM region")
        .count();
    assert_eq!(celm_features, regions);
    for name in ["heatmap.png", "overlay.png", "tissue.png", "summary.json"] {
        assert!(out.join(name).is_file(), "{name}");
    }
}

#[test]
fn a_large_image_without_pixel_size_is_refused_with_the_way_out() {
    let dir = scratch("heatmap-no-mpp");
    let input = dir.join("region.png");
    region().save(&input).unwrap();
    let output = celnet(&[
        "heatmap",
        input.to_str().unwrap(),
        "-o",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--mpp") && stderr.contains("288x192"),
        "{stderr}"
    );
}

#[test]
fn a_40x_region_is_shrunk_to_the_model_scale() {
    let dir = scratch("heatmap-40x");
    let input = dir.join("region.png");
    // The region upscaled 4x stands for a 0.243 µm/px scan of the same tissue.
    let big = image::imageops::resize(&region(), 1152, 768, image::imageops::FilterType::Triangle);
    big.save(&input).unwrap();
    let report = json_stdout(&celnet(&[
        "heatmap",
        input.to_str().unwrap(),
        "-o",
        dir.join("out").to_str().unwrap(),
        "--mpp",
        "0.243",
        "--json",
    ]));
    assert!((report["factor"].as_f64().unwrap() - 0.25).abs() < 1e-3);
    assert_eq!(report["grid"], serde_json::json!([7, 4]), "stride 32");
    assert_eq!(report["mode"], "dense");
    // Points come back in the input's pixels.
    for p in report["points"].as_array().unwrap() {
        assert!(p["x"].as_f64().unwrap() < 1152.0 && p["y"].as_f64().unwrap() < 768.0);
    }

    // CELM of a window chosen by its centre in the input's pixels.
    let out = dir.join("at");
    let report = json_stdout(&celnet(&[
        "heatmap",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mpp",
        "0.243",
        "--top-k",
        "0",
        "--explain-at",
        "600,400",
        "--json",
    ]));
    let evidence = report["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1);
    let w = &evidence[0];
    assert_eq!(w["reason"], "requested");
    let side = w["width"].as_f64().unwrap();
    assert!((side - 96.0 / report["factor"].as_f64().unwrap()).abs() < 1e-6);
    let centre = (
        w["x"].as_f64().unwrap() + side / 2.0,
        w["y"].as_f64().unwrap() + side / 2.0,
    );
    assert!(
        (centre.0 - 600.0).abs() <= 4.0 && (centre.1 - 400.0).abs() <= 4.0,
        "{centre:?}"
    );
    assert!(out.join(w["overlay_png"].as_str().unwrap()).is_file());
    let outside = celnet(&[
        "heatmap",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mpp",
        "0.243",
        "--explain-at",
        "5000,10",
    ]);
    assert!(String::from_utf8_lossy(&outside.stderr).contains("outside the 1152x768 px input"));
}

#[test]
fn damaged_and_oversized_files_are_clear_errors() {
    let dir = scratch("heatmap-bad");
    // A TIFF cut in half, and a PNG whose header claims 100,000 x 100,000 px with no pixel data:
    // both refused before any pixel buffer is allocated.
    let mut tiff = std::io::Cursor::new(Vec::new());
    region()
        .write_to(&mut tiff, image::ImageFormat::Tiff)
        .unwrap();
    let tiff = tiff.into_inner();
    let truncated = dir.join("truncated.tif");
    std::fs::write(&truncated, &tiff[..tiff.len() / 2]).unwrap();
    let mut png = Vec::new();
    png.extend_from_slice(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]);
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]);
    let huge = dir.join("huge.png");
    std::fs::write(&huge, png).unwrap();
    for file in [&truncated, &huge] {
        let output = celnet(&[
            "heatmap",
            file.to_str().unwrap(),
            "-o",
            dir.join("out").to_str().unwrap(),
            "--mpp",
            "0.5",
        ]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot read the image"),
            "{}: {stderr}",
            file.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The shipped weights on flex and the 384x384 px fixture patchwork with its tissue and a
/// stride-32 grid: the dense pass's test case.
fn patchwork_case() -> (Classifier, RgbImage, TissueMask, WindowGrid) {
    let device = Device::flex();
    let classifier = Classifier::new(celnet::weights::load_default(&device).unwrap(), &device);
    let region = patchwork();
    let tissue = TissueMask::of(&region);
    (
        classifier,
        region,
        tissue,
        WindowGrid::new(384, 384, 32).unwrap(),
    )
}

#[test]
fn dense_scores_follow_exact_scores_within_the_documented_tolerance() {
    let (classifier, region, tissue, grid) = patchwork_case();
    let exact =
        pollster::block_on(Scan::exact(grid, &tissue, 64).score(&classifier, &region, |_| {}))
            .unwrap();
    let dense = pollster::block_on(Scan::dense(grid, &tissue, DENSE_TILE).unwrap().score(
        &classifier,
        &region,
        |_| {},
    ))
    .unwrap();
    assert!(exact.scored() > 80, "{} windows in tissue", exact.scored());
    let scored = |h: &Heatmap| {
        h.probabilities
            .iter()
            .map(Option::is_some)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        scored(&dense),
        scored(&exact),
        "the same windows are scored"
    );
    let (mean, p99, max) = differences(&exact, &dense);
    eprintln!("dense vs exact: mean {mean:.4}, p99 {p99:.4}, max {max:.4}");
    assert!(mean < 0.1 && p99 < 0.5, "mean {mean}, p99 {p99}");
    // The two agree on where the tumour is: the exact scores of the dense map's top windows.
    let best = dense
        .probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.unwrap_or(0.0).total_cmp(&b.1.unwrap_or(0.0)))
        .unwrap()
        .0;
    assert!(exact.probabilities[best].unwrap() > 0.5);

    // Tiles of four windows a side instead of ten: with its context, a tile's border window
    // scores as it does inside a larger tile.
    let small = pollster::block_on(Scan::dense(grid, &tissue, 192).unwrap().score(
        &classifier,
        &region,
        |_| {},
    ))
    .unwrap();
    let (mean, p99, max) = differences(&dense, &small);
    eprintln!("tiles of 192 vs 1024 px: mean {mean:.4}, p99 {p99:.4}, max {max:.4}");
    assert!(mean < 1e-3 && max < 0.01, "mean {mean}, max {max}");
}

#[test]
fn dense_tiles_shrink_to_their_tissue_and_score_it_as_the_whole_image_does() {
    // The patchwork's left half turned to glass: the one tile covers only the right half and
    // its context, and its windows score as they do in one pass over the whole image.
    let (classifier, mut region, _, grid) = patchwork_case();
    for (x, _, pixel) in region.enumerate_pixels_mut() {
        if x < 192 {
            *pixel = Rgb([242, 242, 242]);
        }
    }
    let tissue = TissueMask::of(&region);
    let scan = Scan::dense(grid, &tissue, DENSE_TILE).unwrap();
    let tile = scan.tiles()[0];
    assert_eq!(scan.tiles().len(), 1);
    assert!(
        tile.col >= 3 && tile.x > 0 && tile.width < 384,
        "the tile was not shrunk: {tile:?}"
    );
    assert_eq!(tile.windows, scan.total());
    let shrunk = pollster::block_on(scan.score(&classifier, &region, |_| {})).unwrap();
    let whole =
        pollster::block_on(classifier.crop_window_logits(&region, grid.stride, None)).unwrap();
    let mut worst = 0.0f32;
    for (probability, logit) in shrunk.probabilities.iter().zip(&whole) {
        if let Some(p) = probability {
            worst = worst.max((p - celnet::network::classifier::sigmoid(*logit)).abs());
        }
    }
    assert!(worst < 0.01, "largest difference {worst}");
}

#[test]
fn dense_tiles_scored_in_any_order_make_the_same_heatmap() {
    // The page's worker pool finishes tiles in any order, each crop scored by another wasm
    // instance: gathering them must give what the sequential pass gives.
    let (classifier, region, tissue, grid) = patchwork_case();
    let sequential = pollster::block_on(Scan::dense(grid, &tissue, 192).unwrap().score(
        &classifier,
        &region,
        |_| {},
    ))
    .unwrap();
    let mut scan = Scan::dense(grid, &tissue, 192).unwrap();
    let tiles = scan.tiles().len();
    assert!(tiles >= 4, "{tiles} tiles");
    assert_eq!(scan.total(), sequential.scored());
    let mut scored = 0;
    for index in (0..tiles).rev() {
        let crop = scan.crop(&region, index).unwrap();
        let kept = scan.kept(index).unwrap();
        let logits =
            pollster::block_on(classifier.crop_window_logits(&crop, grid.stride, Some(&kept)))
                .unwrap();
        assert!(
            scan.accept(index, &logits[1..]).is_err(),
            "a short logit list is refused"
        );
        scored += scan.accept(index, &logits).unwrap();
    }
    assert_eq!(scored, sequential.scored());
    assert_eq!(scan.into_heatmap().probabilities, sequential.probabilities);
    assert!(Scan::dense(WindowGrid::new(384, 384, 30).unwrap(), &tissue, 192).is_err());
}

#[test]
fn slide_files_are_read_at_the_pyramid_level_nearest_the_model_scale() {
    let dir = scratch("heatmap-slides");
    let run = |input: &str, name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["heatmap", input, "-o", out.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let report = json_stdout(&celnet(&args));
        let windows = rows(&std::fs::read_to_string(out.join("tiles.csv")).unwrap());
        (report, windows)
    };
    // 288x192 px at 0.499 µm/px with a level at half that size: level 1 is read, within 5% of
    // the model's scale, and results come back in level-0 pixels.
    let (pyramid, from_level) = run("tests/fixtures/tiff/pyramid-deflate.tif", "pyramid", &[]);
    assert_eq!(pyramid["level"], 1);
    assert_eq!(pyramid["mpp_source"], "file");
    assert!((pyramid["factor"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    // Level 0 on request, shrunk to the model's scale instead.
    let (forced, _) = run(
        "tests/fixtures/tiff/pyramid-deflate.tif",
        "level0",
        &["--level", "0"],
    );
    assert_eq!(forced["level"], 0);
    assert_eq!(forced["grid"], pyramid["grid"]);
    let missing = celnet(&[
        "heatmap",
        "tests/fixtures/tiff/pyramid-deflate.tif",
        "-o",
        dir.join("level7").to_str().unwrap(),
        "--level",
        "7",
    ]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("levels 0 to 2"));
    // The same pixels as a PNG, resampled whole from full resolution.
    let (png, from_png) = run("tests/fixtures/tiff/region.png", "png", &["--mpp", "0.499"]);
    assert!(png.get("level").is_none());
    assert_eq!(pyramid["grid"], png["grid"]);
    assert!(!from_level.is_empty() && from_level.len() == from_png.len());
    let mean = from_level
        .iter()
        .zip(&from_png)
        .map(|(a, b)| {
            assert!((a[0] - b[0]).abs() < 3.0 && (a[1] - b[1]).abs() < 3.0);
            (a[4] - b[4]).abs()
        })
        .sum::<f64>()
        / from_png.len() as f64;
    assert!(mean < 0.1, "level 1 vs resampled PNG: mean |dp| {mean}");

    // A header that claims a million pixels a side over a few tiles: refused, nothing the size
    // of the slide allocated.
    let mut huge = std::fs::read("tests/fixtures/tiff/tiled-lzw.tif").unwrap();
    let ifd = u32::from_le_bytes(huge[4..8].try_into().unwrap()) as usize;
    let entries = u16::from_le_bytes([huge[ifd], huge[ifd + 1]]) as usize;
    for e in (0..entries).map(|i| ifd + 2 + 12 * i) {
        let tag = u16::from_le_bytes([huge[e], huge[e + 1]]);
        if tag == 256 || tag == 257 {
            // ImageWidth and ImageLength, rewritten as LONGs.
            huge[e + 2..e + 4].copy_from_slice(&4u16.to_le_bytes());
            huge[e + 8..e + 12].copy_from_slice(&1_000_000u32.to_le_bytes());
        }
    }
    let huge_path = dir.join("huge.tif");
    std::fs::write(&huge_path, huge).unwrap();
    let output = celnet(&[
        "heatmap",
        huge_path.to_str().unwrap(),
        "-o",
        dir.join("huge").to_str().unwrap(),
        "--mpp",
        "0.25",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot read the image"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The Aperio crop: JPEG tiles with shared tables, MPP from its description.
    let (svs, _) = run("tests/fixtures/tiff/svs-crop.svs", "svs", &["--top-k", "1"]);
    assert_eq!(svs["level"], 0);
    assert_eq!(svs["mpp"], 0.499);
    assert!(svs["windows"].as_u64().unwrap() > 0);
    assert_eq!(svs["format"], "Aperio SVS, JPEG");

    // The same crop as Aperio JPEG 2000 (lossy at 35 dB) scores as its source PNG does.
    let (jp2k, jp2k_windows) = run("tests/fixtures/tiff/svs-jp2k-rgb.svs", "jp2k", &[]);
    assert_eq!(jp2k["format"], "Aperio SVS, Aperio JPEG 2000 (33005)");
    let (source, source_windows) = run(
        "tests/fixtures/tiff/svs-crop.png",
        "jp2k-source",
        &["--mpp", "0.499"],
    );
    assert_eq!(source["format"], "PNG");
    assert_eq!(jp2k_windows.len(), source_windows.len());
    for key in ["slide_score", "slide_probability"] {
        let (a, b) = (jp2k[key].as_f64().unwrap(), source[key].as_f64().unwrap());
        assert!((a - b).abs() < 0.02, "{key}: JPEG 2000 {a}, PNG {b}");
    }

    // The same crop as DICOM WSI, given as its folder. Its level 0 scores as the PNG does.
    // (By default level 1 is read, which wsidicomizer resampled its own way: on this crop of
    // 19 windows that moves windows at the tissue's edge, and the maximum went to 0.76.)
    let (folder, folder_windows) = run("tests/fixtures/dicom/jpeg2000", "dicom", &["--level", "0"]);
    assert_eq!(
        folder["format"],
        "DICOM WSI, JPEG 2000 (1.2.840.10008.1.2.4.91)"
    );
    assert_eq!(folder["mpp"], 0.499);
    assert_eq!(folder_windows.len(), source_windows.len());
    for key in ["slide_score", "slide_probability"] {
        let (a, b) = (folder[key].as_f64().unwrap(), source[key].as_f64().unwrap());
        assert!((a - b).abs() < 0.02, "{key}: DICOM {a}, PNG {b}");
    }
    let out = dir.join("dicom-files");
    // Its files, in any order, are the same slide.
    let files = json_stdout(&celnet(&[
        "heatmap",
        "tests/fixtures/dicom/jpeg2000/level-1.dcm",
        "tests/fixtures/dicom/jpeg2000/level-0.dcm",
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--level",
        "0",
    ]));
    assert_eq!(files["slide_score"], folder["slide_score"]);
    assert_eq!(files["level"], folder["level"]);
}

/// Twice the signed area of a closed GeoJSON ring.
fn ring_area(ring: &[Value]) -> f64 {
    ring.windows(2)
        .map(|w| {
            let (a, b) = (&w[0], &w[1]);
            a[0].as_f64().unwrap() * b[1].as_f64().unwrap()
                - b[0].as_f64().unwrap() * a[1].as_f64().unwrap()
        })
        .sum::<f64>()
        / 2.0
}

#[test]
fn lesions_are_reported_with_outlines_of_their_windows() {
    let dir = scratch("heatmap-lesions");
    let field = "tests/fixtures/slide/lesions.png";
    let report = json_stdout(&celnet(&[
        "heatmap",
        field,
        "-o",
        dir.to_str().unwrap(),
        "--top-k",
        "0",
        "--json",
    ]));
    let lesions = report["lesions"].as_array().unwrap();
    assert!(!lesions.is_empty(), "the fixture holds metastasis");
    let probability = report["slide_probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&probability));
    let category = report["slide_category"].as_str().unwrap();
    assert!(["negative", "itc", "micro", "macro"].contains(&category));
    let geojson: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("heatmap.geojson")).unwrap())
            .unwrap();
    assert_qupath_geojson(&geojson);
    let outlines: Vec<&Value> = geojson["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["properties"]["name"]
                .as_str()
                .unwrap()
                .starts_with("lesion ")
        })
        .collect();
    assert_eq!(outlines.len(), lesions.len());
    // A window's cell is one stride wide at the model's scale.
    let cell = report["stride"].as_f64().unwrap() / report["factor"].as_f64().unwrap();
    let mpp = report["mpp"].as_f64().unwrap();
    for (outline, lesion) in outlines.iter().zip(lesions) {
        let area: f64 = outline["geometry"]["coordinates"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|polygon| polygon.as_array().unwrap())
            .map(|ring| ring_area(ring.as_array().unwrap()))
            .sum();
        let windows = lesion["windows"].as_f64().unwrap();
        assert!(
            (area - windows * cell * cell).abs() < 1e-6 * area,
            "{area} px²"
        );
        let mm2 = area * mpp * mpp / 1e6;
        assert!((lesion["area_mm2"].as_f64().unwrap() - mm2).abs() < 1e-9);
        let diameter = lesion["diameter_mm"].as_f64().unwrap();
        let expected = match diameter {
            d if d <= 0.2 => "itc",
            d if d <= 2.0 => "micro",
            _ => "macro",
        };
        assert_eq!(lesion["category"], expected);
        assert_eq!(
            outline["properties"]["measurements"]["windows"],
            lesion["windows"]
        );
    }

    // A slide model of one's own: lower seeds keep every lesion and may find more; a file
    // that is not a slide model is a clear error.
    let mut model: Value =
        serde_json::from_str(&std::fs::read_to_string("weights/celnet-pcam.slide.json").unwrap())
            .unwrap();
    model["hysteresis"]["seed"] = serde_json::json!(0.6);
    let path = dir.join("low-seed.json");
    std::fs::write(&path, model.to_string()).unwrap();
    let run = |model: &std::path::Path| {
        celnet(&[
            "heatmap",
            field,
            "-o",
            dir.join("own").to_str().unwrap(),
            "--top-k",
            "0",
            "--slide-model",
            model.to_str().unwrap(),
            "--json",
        ])
    };
    let own = json_stdout(&run(&path));
    assert!(own["lesions"].as_array().unwrap().len() >= lesions.len());
    let wrong = run(std::path::Path::new("tests/fixtures/slide/README.md"));
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not a slide model"));
}

#[test]
fn the_dense_pass_takes_the_tile_side_asked_for_and_reports_it() {
    let field = "tests/fixtures/slide/lesions.png";
    let run = |name: &str, extra: &[&str]| {
        let dir = scratch(name);
        let mut args = vec!["heatmap", field, "-o", dir.to_str().unwrap()];
        args.extend_from_slice(&["--top-k", "0", "--json"]);
        args.extend_from_slice(extra);
        let report = json_stdout(&celnet(&args));
        let windows = rows(&std::fs::read_to_string(dir.join("tiles.csv")).unwrap());
        (report, windows)
    };
    let (whole, whole_windows) = run("heatmap-tile-default", &[]);
    let (small, small_windows) = run("heatmap-tile-192", &["--tile", "192"]);
    assert_eq!(whole["scoring"]["tiles"], 1);
    assert_eq!(whole["scoring"]["tile"], 1024);
    assert_eq!(small["scoring"]["tile"], 192);
    assert!(small["scoring"]["tiles"].as_u64().unwrap() > 1);
    // The same windows, scored as in one tile up to the tiles' context (see
    // `dense_scores_follow_exact_scores_within_the_documented_tolerance`).
    assert_eq!(whole_windows.len(), small_windows.len());
    let mut differences = Vec::new();
    for (a, b) in whole_windows.iter().zip(&small_windows) {
        assert_eq!(a[..4], b[..4], "the same window");
        differences.push((a[4] - b[4]).abs());
    }
    let mean = differences.iter().sum::<f64>() / differences.len() as f64;
    let max = differences.iter().copied().fold(0.0, f64::max);
    eprintln!("--tile 192 vs one tile: mean {mean:.5}, max {max:.4}");
    assert!(mean < 2e-3 && max < 0.02, "mean {mean}, max {max}");

    let refused = celnet(&["heatmap", field, "-o", "unused", "--tile", "50"]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("--tile"), "{message}");
}

#[test]
fn dense_progress_counts_windows_and_the_pixels_their_time_follows() {
    // Tiles come largest first; progress reports after each, its pixels summing to the plan's
    // and its windows to the tissue windows.
    let (classifier, region, tissue, grid) = patchwork_case();
    let scan = Scan::dense(grid, &tissue, 192).unwrap();
    let sizes: Vec<u64> = scan.tiles().iter().map(|t| t.pixels()).collect();
    assert!(
        sizes.windows(2).all(|w| w[0] >= w[1]),
        "not largest first: {sizes:?}"
    );
    let (total_windows, total_pixels) = (scan.total(), scan.pixels());
    assert_eq!(total_pixels, sizes.iter().sum::<u64>());
    let mut seen: Vec<Progress> = Vec::new();
    pollster::block_on(scan.score(&classifier, &region, |p| seen.push(p))).unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.windows(2)
            .all(|w| w[0].pixels < w[1].pixels && w[0].windows <= w[1].windows)
    );
    let last = seen.last().unwrap();
    assert_eq!((last.windows, last.pixels), (total_windows, total_pixels));
    assert!(
        seen.iter()
            .all(|p| p.total_windows == total_windows && p.total_pixels == total_pixels)
    );
}
