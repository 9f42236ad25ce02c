//! Training data: PCam patches from image folders (`SPLIT/{0,1}/*.jpg|png`) or from the
//! official PCam HDF5 files, held in memory as 8-bit RGB, with the paper's augmentation.

use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CelnetError, Result};
use crate::input::{CHANNEL_MEAN, CHANNEL_STD, has_image_extension, read_image, save_image};
use crate::train::stain::StainJitter;

/// File names of the official PCam HDF5 files for a split.
pub fn pcam_h5_files(root: &Path, split: &str) -> (PathBuf, PathBuf) {
    let name = |part: &str| root.join(format!("camelyonpatch_level_2_split_{split}_{part}.h5"));
    (name("x"), name("y"))
}

/// A split of a data root: `ROOT/SPLIT/{0,1}/*` image folders, or the official PCam HDF5 files
/// `ROOT/camelyonpatch_level_2_split_SPLIT_{x,y}.h5`.
pub fn load_split(root: &Path, split: &str) -> Result<PatchSet> {
    let folder = root.join(split);
    if folder.is_dir() {
        return PatchSet::from_folder(&folder);
    }
    let (x, y) = pcam_h5_files(root, split);
    if x.is_file() && y.is_file() {
        return PatchSet::from_hdf5(&x, &y);
    }
    Err(CelnetError::Dataset(format!(
        "{} has neither a `{split}/` folder nor {} and {}",
        root.display(),
        x.display(),
        y.display()
    )))
}

/// Patches of a split folder (`DIR/0`, `DIR/1`) given itself, or of the `split` of a data root
/// (folders or the PCam HDF5 files, as for [`load_split`]).
pub fn load_folder_or_split(path: &Path, split: &str) -> Result<PatchSet> {
    if path.join("0").is_dir() {
        PatchSet::from_folder(path)
    } else {
        load_split(path, split)
    }
}

/// The half of a validation split a patch belongs to, by a fixed rule on its name, so that every
/// command, every run and every copy of the split (stain-shifted copies keep the names) agrees.
/// Everything is chosen on the selection half (epochs, fine-tunes, temperature, thresholds);
/// figures are reported on the report half, on which nothing is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Half {
    Selection,
    Report,
}

impl Half {
    /// The half of the patch from `source` (a file path or `file.h5#INDEX`): selection when the
    /// first byte of the SHA-256 of its [`patch_name`] is even, report when it is odd
    /// (`printf patch0029613 | sha256sum` starts `52`: selection).
    pub fn of(source: &str) -> Half {
        if Sha256::digest(patch_name(source).as_bytes())[0] % 2 == 0 {
            Half::Selection
        } else {
            Half::Report
        }
    }
}

impl std::fmt::Display for Half {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Half::Selection => "selection",
            Half::Report => "report",
        })
    }
}

/// A patch's name without folder or extension (`patch0029612`), or for an HDF5 patch its index
/// as six digits (`000123`): what [`PatchSet::write_folder`] names its copy, so a copy falls
/// into the same [`Half`].
pub fn patch_name(source: &str) -> String {
    if let Some((_, index)) = source.rsplit_once('#')
        && let Ok(index) = index.parse::<usize>()
    {
        return format!("{index:06}");
    }
    Path::new(source)
        .file_stem()
        .map_or_else(|| source.to_owned(), |s| s.to_string_lossy().into_owned())
}

/// Square RGB patches with binary labels, stored contiguously (`N x side x side x 3`).
#[derive(Clone, Debug)]
pub struct PatchSet {
    pub side: usize,
    pixels: Vec<u8>,
    pub labels: Vec<u8>,
    /// Where each patch came from (a file path, or `file.h5#index`).
    pub sources: Vec<String>,
}

/// The image files of a split folder with labels from their `0/` or `1/` subfolder, sorted.
pub fn list_split(dir: &Path) -> Result<Vec<(PathBuf, u8)>> {
    let mut files = Vec::new();
    for label in [0u8, 1] {
        let class_dir = dir.join(label.to_string());
        if !class_dir.is_dir() {
            return Err(CelnetError::Dataset(format!(
                "{} has no `{label}/` folder (expected SPLIT/0/*.jpg and SPLIT/1/*.jpg)",
                dir.display()
            )));
        }
        let entries = std::fs::read_dir(&class_dir).map_err(|e| CelnetError::io(&class_dir, e))?;
        let mut class_files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| has_image_extension(p))
            .collect();
        class_files.sort();
        files.extend(class_files.into_iter().map(|p| (p, label)));
    }
    if files.is_empty() {
        return Err(CelnetError::Dataset(format!(
            "no images under {}/0 or {}/1",
            dir.display(),
            dir.display()
        )));
    }
    Ok(files)
}

impl PatchSet {
    /// Number of patches.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no patches.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Patches from raw `N x side x side x 3` bytes.
    pub fn from_raw(side: usize, pixels: Vec<u8>, labels: Vec<u8>, sources: Vec<String>) -> Self {
        assert_eq!(pixels.len(), labels.len() * side * side * 3);
        assert_eq!(sources.len(), labels.len());
        Self {
            side,
            pixels,
            labels,
            sources,
        }
    }

    /// Every image of a split folder (`SPLIT/0/*`, `SPLIT/1/*`). All must be the same square
    /// size; decoding uses both cores.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let files = list_split(dir)?;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = files.len().div_ceil(workers);
        let decoded: Vec<Result<Vec<image::RgbImage>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || part.iter().map(|(path, _)| read_image(path)).collect())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("decoder thread panicked"))
                .collect()
        });
        let mut images = Vec::with_capacity(files.len());
        for part in decoded {
            images.extend(part?);
        }
        let side = images.first().map_or(0, |image| image.width()) as usize;
        let mut pixels = Vec::with_capacity(files.len() * side * side * 3);
        for ((path, _), image) in files.iter().zip(&images) {
            if image.width() as usize != side || image.height() as usize != side {
                return Err(CelnetError::Dataset(format!(
                    "{} is {}x{} px; every patch of a split must be {side}x{side}",
                    path.display(),
                    image.width(),
                    image.height()
                )));
            }
            pixels.extend_from_slice(image.as_raw());
        }
        Ok(Self {
            side,
            pixels,
            labels: files.iter().map(|(_, l)| *l).collect(),
            sources: files.iter().map(|(p, _)| p.display().to_string()).collect(),
        })
    }

    /// `n` patches drawn without replacement in a seeded random order (all if `n >= len`).
    pub fn random_subset(&self, n: usize, seed: u64) -> Self {
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed));
        order.truncate(n);
        order.sort_unstable();
        self.subset(&order)
    }

    /// The patches of one [`Half`] of the set, in their order.
    pub fn half(&self, half: Half) -> Self {
        let chosen: Vec<usize> = (0..self.len())
            .filter(|&i| Half::of(&self.sources[i]) == half)
            .collect();
        self.subset(&chosen)
    }

    /// The patches at `indices`, in that order.
    fn subset(&self, indices: &[usize]) -> Self {
        let mut pixels = Vec::with_capacity(indices.len() * self.side * self.side * 3);
        for &i in indices {
            pixels.extend_from_slice(self.patch(i));
        }
        Self {
            side: self.side,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            sources: indices.iter().map(|&i| self.sources[i].clone()).collect(),
        }
    }

    /// A copy with each patch's stains shifted at random (HED space, [`StainJitter`]); a
    /// patch's shift depends only on `seed` and the patch's source, so a copy is reproducible
    /// and a subset of it matches the same subset shifted alone.
    pub fn stain_shifted(&self, jitter: StainJitter, seed: u64) -> Self {
        let mut shifted = self.clone();
        let size = self.side * self.side * 3;
        for (i, patch) in shifted.pixels.chunks_exact_mut(size).enumerate() {
            let mut rng = rand::rngs::StdRng::seed_from_u64(patch_seed(seed, &self.sources[i]));
            jitter.draw(&mut rng).apply(patch);
        }
        shifted
    }

    /// Writes the patches as PNG files (lossless) into `dir/0` and `dir/1`, each named
    /// [`patch_name`]`.png`. Returns the number written.
    pub fn write_folder(&self, dir: &Path) -> Result<usize> {
        for label in ["0", "1"] {
            let class_dir = dir.join(label);
            std::fs::create_dir_all(&class_dir).map_err(|e| CelnetError::io(&class_dir, e))?;
        }
        for i in 0..self.len() {
            let path = dir
                .join(self.labels[i].to_string())
                .join(format!("{}.png", patch_name(&self.sources[i])));
            let side = self.side as u32;
            let patch = image::RgbImage::from_raw(side, side, self.patch(i).to_vec())
                .expect("a patch holds side x side RGB pixels");
            save_image(&patch, &path)?;
        }
        Ok(self.len())
    }

    /// Patches from the official PCam HDF5 files: dataset `x` (uint8, `N x S x S x 3`) in one
    /// file and `y` (uint8, `N` labels in any shape) in the other. Gzip-compressed and chunked
    /// layouts are read as well as contiguous ones.
    pub fn from_hdf5(x_path: &Path, y_path: &Path) -> Result<Self> {
        let h5_error = |path: &Path, e: hdf5_reader::error::Error| {
            CelnetError::Dataset(format!("{}: {e}", path.display()))
        };
        let x_file = hdf5_reader::Hdf5File::open(x_path).map_err(|e| h5_error(x_path, e))?;
        let x = x_file.dataset("x").map_err(|e| h5_error(x_path, e))?;
        let shape: Vec<usize> = x.shape().iter().map(|&d| d as usize).collect();
        let [n, side, side2, 3] = shape[..] else {
            return Err(CelnetError::Dataset(format!(
                "{}: dataset x has shape {shape:?}; expected N x S x S x 3",
                x_path.display()
            )));
        };
        if side != side2 {
            return Err(CelnetError::Dataset(format!(
                "{}: patches are {side}x{side2}; expected square patches",
                x_path.display()
            )));
        }
        let mut pixels = vec![0u8; n * side * side * 3];
        x.read_into(&mut pixels).map_err(|e| h5_error(x_path, e))?;

        let y_file = hdf5_reader::Hdf5File::open(y_path).map_err(|e| h5_error(y_path, e))?;
        let y = y_file.dataset("y").map_err(|e| h5_error(y_path, e))?;
        let count: u64 = y.shape().iter().product();
        if count as usize != n {
            return Err(CelnetError::Dataset(format!(
                "{} holds {count} labels for {n} patches",
                y_path.display()
            )));
        }
        let mut labels = vec![0u8; n];
        y.read_into(&mut labels).map_err(|e| h5_error(y_path, e))?;
        if let Some(bad) = labels.iter().find(|&&l| l > 1) {
            return Err(CelnetError::Dataset(format!(
                "{}: label {bad} is not 0 or 1",
                y_path.display()
            )));
        }
        let name = x_path.display();
        Ok(Self {
            side,
            pixels,
            labels,
            sources: (0..n).map(|i| format!("{name}#{i}")).collect(),
        })
    }

    /// Number of patches of each class.
    pub fn class_counts(&self) -> [usize; 2] {
        let positives = self.labels.iter().filter(|&&l| l == 1).count();
        [self.len() - positives, positives]
    }

    /// One patch's HWC bytes.
    pub fn patch(&self, index: usize) -> &[u8] {
        let size = self.side * self.side * 3;
        &self.pixels[index * size..(index + 1) * size]
    }

    /// A normalised `[B, 3, crop, crop]` batch and its labels.
    ///
    /// With `rng`, each patch gets a random `crop x crop` window that still contains the
    /// labelled centre 32x32, a random multiple of 90-degree rotation and a random horizontal
    /// flip. Without it, the central window, unaugmented.
    pub fn batch(
        &self,
        indices: &[usize],
        crop: usize,
        rng: Option<&mut dyn Rng>,
    ) -> (TensorData, Vec<f32>) {
        self.augmented_batch(indices, crop, rng, &ColourAugmentation::NONE)
    }

    /// [`batch`](Self::batch) with colour augmentation as well (when `rng` is given): first a
    /// random stain shift in HED space ([`StainJitter`]), then per channel a random gain in
    /// `1 ± colour_jitter` and a random offset in `± colour_jitter / 2` (intensities in [0, 1],
    /// clamped). Both imitate differences in staining and scanning between labs. What is off
    /// draws nothing, so the random stream, and thus a seeded run, is the same as without it.
    pub fn augmented_batch(
        &self,
        indices: &[usize],
        crop: usize,
        mut rng: Option<&mut dyn Rng>,
        colours: &ColourAugmentation,
    ) -> (TensorData, Vec<f32>) {
        assert!(crop <= self.side);
        let plane = crop * crop;
        let mut out = vec![0.0f32; indices.len() * 3 * plane];
        let centre = (self.side - crop) / 2;
        // Window origins that keep the labelled centre 32x32 inside the crop.
        let lo = (self.side / 2 + 16).saturating_sub(crop);
        let hi = (self.side / 2 - 16).min(self.side - crop);
        let mut window = vec![0.0f32; crop * crop * 3];
        for (b, &index) in indices.iter().enumerate() {
            let (x0, y0, rotation, flip) = match rng.as_deref_mut() {
                Some(rng) if lo <= hi => (
                    rng.random_range(lo..=hi),
                    rng.random_range(lo..=hi),
                    rng.random_range(0..4u8),
                    rng.random_bool(0.5),
                ),
                Some(rng) => (
                    centre,
                    centre,
                    rng.random_range(0..4u8),
                    rng.random_bool(0.5),
                ),
                None => (centre, centre, 0, false),
            };
            let stain = match rng.as_deref_mut() {
                Some(rng) if !colours.stain.is_none() => Some(colours.stain.draw(rng).od_map()),
                _ => None,
            };
            let mut gain = [1.0f32; 3];
            let mut offset = [0.0f32; 3];
            if let Some(rng) = rng.as_deref_mut().filter(|_| colours.colour_jitter > 0.0) {
                let jitter = colours.colour_jitter;
                for c in 0..3 {
                    gain[c] = 1.0 + rng.random_range(-jitter..=jitter);
                    offset[c] = rng.random_range(-jitter..=jitter) / 2.0;
                }
            }
            let patch = self.patch(index);
            let base = b * 3 * plane;
            // The window's pixels in [0, 1], stain-shifted, row by row.
            for (sy, row) in window.chunks_exact_mut(crop * 3).enumerate() {
                let start = ((y0 + sy) * self.side + x0) * 3;
                let source = &patch[start..start + crop * 3];
                match &stain {
                    Some(map) => map.apply_unit(source, row),
                    None => {
                        for (value, &byte) in row.iter_mut().zip(source) {
                            *value = f32::from(byte) / 255.0;
                        }
                    }
                }
            }
            for y in 0..crop {
                for x in 0..crop {
                    let (sx, sy) = orient(x, y, crop, rotation, flip);
                    let src = (sy * crop + sx) * 3;
                    for c in 0..3 {
                        // Exact for gain 1 and offset 0: x * 1 + 0 == x, already in [0, 1].
                        let value = (window[src + c] * gain[c] + offset[c]).clamp(0.0, 1.0);
                        out[base + c * plane + y * crop + x] =
                            (value - CHANNEL_MEAN[c]) / CHANNEL_STD[c];
                    }
                }
            }
        }
        let labels = indices.iter().map(|&i| f32::from(self.labels[i])).collect();
        (TensorData::new(out, [indices.len(), 3, crop, crop]), labels)
    }
}

/// Colour augmentation of training batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColourAugmentation {
    /// Per-channel gain `1 ± colour_jitter` and offset `± colour_jitter / 2`; 0 = none.
    pub colour_jitter: f32,
    /// Random stain shifts in HED space; [`StainJitter::NONE`] = none.
    pub stain: StainJitter,
}

impl ColourAugmentation {
    /// No colour augmentation.
    pub const NONE: ColourAugmentation = ColourAugmentation {
        colour_jitter: 0.0,
        stain: StainJitter::NONE,
    };
}

/// The random stream of one patch: its source name mixed into the seed (FNV-1a), so a shifted
/// copy does not depend on which other patches are in the set.
fn patch_seed(seed: u64, source: &str) -> u64 {
    source
        .bytes()
        .fold(seed ^ 0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Source pixel of output pixel `(x, y)` after `rotation` quarter turns and an optional
/// horizontal flip of an `n x n` window.
fn orient(x: usize, y: usize, n: usize, rotation: u8, flip: bool) -> (usize, usize) {
    let x = if flip { n - 1 - x } else { x };
    match rotation {
        0 => (x, y),
        1 => (y, n - 1 - x),
        2 => (n - 1 - x, n - 1 - y),
        _ => (n - 1 - y, x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_follow_the_documented_sha256_rule() {
        // First bytes from `printf NAME | sha256sum`: 0x3b (odd), 0x52 and 0x44 (even).
        assert_eq!(Half::of("valid/1/patch0029612.jpg"), Half::Report);
        assert_eq!(Half::of("valid/1/patch0029613.jpg"), Half::Selection);
        assert_eq!(
            Half::of("camelyonpatch_level_2_split_valid_x.h5#123"),
            Half::Selection
        );
        // A copy keeps its half: another folder, another extension, an HDF5 index as written.
        assert_eq!(Half::of("shifted/1/patch0029612.png"), Half::Report);
        assert_eq!(Half::of("copy/0/000123.png"), Half::Selection);
    }

    #[test]
    fn the_halves_partition_a_split_and_each_holds_both_classes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pcam-valid-200");
        let set = PatchSet::from_folder(&dir).unwrap();
        let selection = set.half(Half::Selection);
        let report = set.half(Half::Report);
        assert_eq!(selection.len() + report.len(), set.len());
        assert!(
            selection
                .sources
                .iter()
                .all(|s| !report.sources.contains(s))
        );
        for half in [&selection, &report] {
            let [negatives, positives] = half.class_counts();
            assert!(
                negatives >= 40 && positives >= 20,
                "{:?}",
                half.class_counts()
            );
        }
        let owner = match Half::of(&set.sources[0]) {
            Half::Selection => &selection,
            Half::Report => &report,
        };
        assert_eq!(owner.sources[0], set.sources[0]);
        assert_eq!(
            owner.patch(0),
            set.patch(0),
            "a half keeps each patch's pixels"
        );
    }

    #[test]
    fn orientations_are_permutations() {
        for rotation in 0..4 {
            for flip in [false, true] {
                let mut seen = [false; 9];
                for y in 0..3 {
                    for x in 0..3 {
                        let (sx, sy) = orient(x, y, 3, rotation, flip);
                        seen[sy * 3 + sx] = true;
                    }
                }
                assert!(seen.iter().all(|&s| s), "rotation {rotation} flip {flip}");
            }
        }
    }

    #[test]
    fn four_quarter_turns_are_identity() {
        let (mut x, mut y) = (0usize, 1usize);
        for _ in 0..4 {
            (x, y) = orient(x, y, 3, 1, false);
        }
        assert_eq!((x, y), (0, 1));
    }

    #[test]
    fn random_crops_keep_the_labelled_centre() {
        // A 96x96 patch whose centre 32x32 is white and the rest black: every 64x64 crop must
        // contain all 1024 white pixels.
        let side = 96;
        let mut pixels = vec![0u8; side * side * 3];
        for y in 32..64 {
            for x in 32..64 {
                pixels[(y * side + x) * 3..(y * side + x) * 3 + 3].fill(255);
            }
        }
        let set = PatchSet::from_raw(side, pixels, vec![1], vec!["synthetic".into()]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let white = (1.0 - CHANNEL_MEAN[0]) / CHANNEL_STD[0];
        for _ in 0..50 {
            let (data, _) = set.batch(&[0], 64, Some(&mut rng));
            let values = data.try_to_vec::<f32>().unwrap();
            let count = values[..64 * 64]
                .iter()
                .filter(|&&v| (v - white).abs() < 1e-4)
                .count();
            assert_eq!(count, 32 * 32);
        }
    }

    #[test]
    fn colour_jitter_changes_colours_within_bounds_and_only_when_asked() {
        let side = 32;
        let pixels: Vec<u8> = (0..side * side * 3).map(|i| (i % 251) as u8).collect();
        let set = PatchSet::from_raw(side, pixels, vec![0], vec!["synthetic".into()]);
        let plain = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            set.batch(&[0], side, Some(&mut rng))
                .0
                .try_to_vec::<f32>()
                .unwrap()
        };
        let jittered = |seed, jitter| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let colours = ColourAugmentation {
                colour_jitter: jitter,
                ..ColourAugmentation::NONE
            };
            set.augmented_batch(&[0], side, Some(&mut rng), &colours)
                .0
                .try_to_vec::<f32>()
                .unwrap()
        };
        // No jitter: the same batch as `batch` for the same seed.
        assert_eq!(plain(3), jittered(3, 0.0));
        // Jitter: every value moves by at most gain and offset allow (in normalised units).
        let (a, b) = (plain(3), jittered(3, 0.1));
        assert_ne!(a, b);
        let plane = side * side;
        for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
            let c = i / plane;
            let raw = x * CHANNEL_STD[c] + CHANNEL_MEAN[c];
            let moved = (y - x).abs() * CHANNEL_STD[c];
            assert!(moved <= raw * 0.1 + 0.05 + 1e-5, "value {i} moved {moved}");
        }
    }
}
