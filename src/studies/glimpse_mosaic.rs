//! Mosaic glimpses with exact tumour masks, built from real PCam tissue.
//!
//! No reachable data set has pixel-level tumour masks, but PCam's label describes exactly the
//! centre 32x32 of each patch. A 96x96 mosaic of nine such centre crops (tumour tiles from
//! label-1 patches, normal tiles from label-0 patches) therefore has a known tile-level mask.
//! Caveat: a label-1 centre holds *at least one* tumour pixel, so a tumour tile is tumour at
//! the level the labels allow, not necessarily in every pixel.

use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage};
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, FileContext, Result};
use crate::explain::Mask;
use crate::input::{has_image_extension, read_gray_image, read_image, save_image};
use crate::train::data::{Half, list_split};

/// Side of one tile: the labelled centre of a PCam patch.
pub const TILE: u32 = 32;
/// Tiles per row and column.
pub const GRID: u32 = 3;
/// Side of a mosaic glimpse.
pub const MOSAIC: u32 = TILE * GRID;

/// How to build a set of mosaics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MosaicOptions {
    /// Number of glimpses.
    pub n: usize,
    pub seed: u64,
    /// Share of glimpses with no tumour tile at all.
    pub normal_share: f64,
    /// Tumour tiles per tumour glimpse are drawn uniformly from `1..=max_tumour_tiles`.
    pub max_tumour_tiles: usize,
    /// Use only part `k` of `n` of each class's sorted file list (every n-th file, from the
    /// k-th), so that mosaics for tuning and for testing never share a source patch.
    pub part: (usize, usize),
    /// Use only this half of the split ([`Half`]), before taking the part.
    #[serde(default)]
    pub half: Option<Half>,
}

impl Default for MosaicOptions {
    fn default() -> Self {
        Self {
            n: 100,
            seed: 1,
            normal_share: 0.1,
            max_tumour_tiles: 5,
            part: (1, 1),
            half: None,
        }
    }
}

/// One glimpse of a mosaic set, as listed in `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MosaicEntry {
    pub image: String,
    pub mask: String,
    /// Row-major tile indices (0..9) holding tumour.
    pub tumour_tiles: Vec<usize>,
    /// The source patch of each tile, row-major.
    pub sources: Vec<String>,
}

/// `manifest.json` of a mosaic folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub source: String,
    pub options: MosaicOptions,
    pub glimpses: Vec<MosaicEntry>,
}

/// Parses `K/N` (1-based part `K` of `N`).
pub fn parse_part(text: &str) -> Result<(usize, usize)> {
    let bad = || CelnetError::InvalidParameter(format!("part must look like 1/2, got {text:?}"));
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// The centre `TILE x TILE` crop of a patch.
pub fn centre_tile(patch: &RgbImage) -> Result<RgbImage> {
    let (w, h) = patch.dimensions();
    if w < TILE || h < TILE {
        return Err(CelnetError::Dataset(format!(
            "a {w}x{h} px patch has no {TILE}x{TILE} centre"
        )));
    }
    Ok(image::imageops::crop_imm(patch, (w - TILE) / 2, (h - TILE) / 2, TILE, TILE).to_image())
}

/// Assembles nine tiles (row-major) into a glimpse and its mask (255 = tumour).
pub fn assemble(tiles: &[RgbImage], tumour: &[bool]) -> (RgbImage, GrayImage) {
    assert_eq!(tiles.len(), (GRID * GRID) as usize);
    assert_eq!(tumour.len(), tiles.len());
    let mut glimpse = RgbImage::new(MOSAIC, MOSAIC);
    let mut mask = GrayImage::new(MOSAIC, MOSAIC);
    for (i, (tile, &t)) in tiles.iter().zip(tumour).enumerate() {
        let (x, y) = ((i as u32 % GRID) * TILE, (i as u32 / GRID) * TILE);
        image::imageops::replace(&mut glimpse, tile, x.into(), y.into());
        for dy in 0..TILE {
            for dx in 0..TILE {
                mask.put_pixel(x + dx, y + dy, image::Luma([if t { 255 } else { 0 }]));
            }
        }
    }
    (glimpse, mask)
}

/// The normal (label 0) and tumour (label 1) files of part `k` of `parts` of a split folder (or
/// of one half of it): every `parts`-th file of each class's sorted list, from the `k`-th, so
/// that different parts never share a patch. Both classes must be present.
pub fn class_pools(
    split: &Path,
    (k, parts): (usize, usize),
    half: Option<Half>,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    if k == 0 || k > parts {
        return Err(CelnetError::InvalidParameter(format!(
            "part {k}/{parts} does not exist"
        )));
    }
    let files = list_split(split)?;
    let class = |label: u8| -> Vec<PathBuf> {
        files
            .iter()
            .filter(|(path, l)| {
                *l == label && half.is_none_or(|h| Half::of(&path.to_string_lossy()) == h)
            })
            .map(|(p, _)| p.clone())
            .skip(k - 1)
            .step_by(parts)
            .collect()
    };
    let (normal, tumour) = (class(0), class(1));
    if normal.is_empty() || tumour.is_empty() {
        return Err(CelnetError::Dataset(format!(
            "{} part {k}/{parts} needs patches of both classes (has {} normal, {} tumour)",
            split.display(),
            normal.len(),
            tumour.len()
        )));
    }
    Ok((normal, tumour))
}

/// Builds `options.n` mosaics from a split folder (`SPLIT/0`, `SPLIT/1`) into `out`:
/// `NNNNN.png`, `NNNNN_mask.png` and `manifest.json`. Deterministic for a seed.
pub fn build(split: &Path, out: &Path, options: &MosaicOptions) -> Result<Manifest> {
    if !(0.0..=1.0).contains(&options.normal_share) {
        return Err(CelnetError::InvalidParameter(format!(
            "normal share must be in [0, 1], got {}",
            options.normal_share
        )));
    }
    if !(1..=(GRID * GRID) as usize).contains(&options.max_tumour_tiles) {
        return Err(CelnetError::InvalidParameter(format!(
            "max tumour tiles must be 1 to 9, got {}",
            options.max_tumour_tiles
        )));
    }
    let (normal, tumour) = class_pools(split, options.part, options.half)?;
    std::fs::create_dir_all(out).map_err(|e| CelnetError::io(out, e))?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let cells: Vec<usize> = (0..(GRID * GRID) as usize).collect();
    let mut glimpses = Vec::with_capacity(options.n);
    for index in 0..options.n {
        let tumour_count = if rng.random_bool(options.normal_share) {
            0
        } else {
            rng.random_range(1..=options.max_tumour_tiles)
        };
        let mut tumour_tiles: Vec<usize> = cells.sample(&mut rng, tumour_count).copied().collect();
        tumour_tiles.sort_unstable();
        let is_tumour: Vec<bool> = cells.iter().map(|c| tumour_tiles.contains(c)).collect();
        let sources: Vec<PathBuf> = is_tumour
            .iter()
            .map(|&t| {
                let pool = if t { &tumour } else { &normal };
                pool.choose(&mut rng).expect("pools are not empty").clone()
            })
            .collect();
        let tiles = sources
            .iter()
            .map(|p| centre_tile(&read_image(p)?).in_file(p))
            .collect::<Result<Vec<_>>>()?;
        let (glimpse, mask) = assemble(&tiles, &is_tumour);
        let entry = MosaicEntry {
            image: format!("{index:05}.png"),
            mask: format!("{index:05}_mask.png"),
            tumour_tiles,
            sources: sources.iter().map(|p| p.display().to_string()).collect(),
        };
        save_image(&glimpse, &out.join(&entry.image))?;
        save_image(&mask, &out.join(&entry.mask))?;
        glimpses.push(entry);
    }
    let manifest = Manifest {
        source: split.display().to_string(),
        options: options.clone(),
        glimpses,
    };
    let path = out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&path, text).map_err(|e| CelnetError::io(&path, e))?;
    Ok(manifest)
}

/// A glimpse with its truth mask, read from a folder.
#[derive(Clone, Debug)]
pub struct LabelledGlimpse {
    pub name: String,
    pub image: RgbImage,
    pub truth: Mask,
}

/// The glimpse images of a folder (PNG, JPEG, TIFF, BMP or WebP), masks (`*_mask.*`) left
/// out, sorted by name.
pub fn list_glimpses(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| CelnetError::io(dir, e))?;
    let mut images: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            has_image_extension(p) && !stem.ends_with("_mask")
        })
        .collect();
    images.sort();
    if images.is_empty() {
        return Err(CelnetError::Dataset(format!(
            "no glimpses in {} (expected NAME.png, e.g. from `celnet mosaic`)",
            dir.display()
        )));
    }
    Ok(images)
}

/// Every glimpse of a folder with its mask: each image `NAME.ext` needs `NAME_mask.png` of the
/// same size (non-zero = tumour). Sorted by name.
pub fn load_labelled(dir: &Path) -> Result<Vec<LabelledGlimpse>> {
    let images = list_glimpses(dir)?;
    images
        .iter()
        .map(|path| {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let mask_path = path.with_file_name(format!("{stem}_mask.png"));
            if !mask_path.is_file() {
                return Err(CelnetError::Dataset(format!(
                    "{} has no tumour mask {}",
                    path.display(),
                    mask_path.display()
                )));
            }
            let image = read_image(path)?;
            let mask = read_gray_image(&mask_path)?;
            let truth = Mask {
                width: mask.width() as usize,
                height: mask.height() as usize,
                data: mask.pixels().map(|p| p.0[0] > 0).collect(),
            };
            truth.ensure_covers(
                &mask_path.display().to_string(),
                image.width() as usize,
                image.height() as usize,
            )?;
            Ok(LabelledGlimpse {
                name: stem.to_string(),
                truth,
                image,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_parse_and_reject_nonsense() {
        assert_eq!(parse_part("1/2").unwrap(), (1, 2));
        assert_eq!(parse_part(" 2 / 2 ").unwrap(), (2, 2));
        for bad in ["0/2", "3/2", "1/0", "a/b", "2"] {
            assert!(parse_part(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn centre_tile_is_the_middle_of_a_patch() {
        let patch = RgbImage::from_fn(96, 96, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let tile = centre_tile(&patch).unwrap();
        assert_eq!(tile.dimensions(), (TILE, TILE));
        assert_eq!(tile.get_pixel(0, 0).0, [32, 32, 0]);
        assert_eq!(tile.get_pixel(31, 31).0, [63, 63, 0]);
        assert!(centre_tile(&RgbImage::new(20, 96)).is_err());
    }

    #[test]
    fn assembled_mask_marks_exactly_the_tumour_tiles() {
        let tiles: Vec<RgbImage> = (0..9)
            .map(|i| RgbImage::from_pixel(TILE, TILE, image::Rgb([i as u8 * 10, 0, 0])))
            .collect();
        let tumour: Vec<bool> = (0..9).map(|i| i == 4 || i == 8).collect();
        let (glimpse, mask) = assemble(&tiles, &tumour);
        assert_eq!(glimpse.dimensions(), (MOSAIC, MOSAIC));
        // Tile 5 is row 1, column 2.
        assert_eq!(glimpse.get_pixel(2 * TILE + 3, TILE + 3).0, [50, 0, 0]);
        let tumour_pixels = mask.pixels().filter(|p| p.0[0] == 255).count();
        assert_eq!(tumour_pixels, 2 * (TILE * TILE) as usize);
        assert_eq!(mask.get_pixel(TILE + 1, TILE + 1).0, [255]);
        assert_eq!(mask.get_pixel(0, 0).0, [0]);
    }
}
