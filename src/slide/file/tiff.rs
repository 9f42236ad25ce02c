//! The pyramid reader: tiled, striped and pyramidal TIFF, BigTIFF and Aperio SVS, read region
//! by region through any `Read + Seek` (a file natively, slices of a local `File` in the
//! browser), so a slide never has to be in memory whole.
//!
//! The `tiff` crate parses the directories and decompresses chunks (none, LZW, deflate,
//! PackBits, JPEG with shared JPEGTables); this module picks the pyramid levels, turns every
//! colour layout it decodes into RGB and refuses what it cannot decode, such as Aperio's
//! JPEG 2000, with a clear error.

use std::io::{Read, Seek};

use image::RgbImage;
use serde::Serialize;
use tiff::decoder::ifd::Value;
use tiff::decoder::{Decoder, Limits};
use tiff::tags::Tag;

use super::colour::to_rgb;
use super::resolution::{FileResolution, tiff_resolution};
use crate::error::{CelnetError, Result};
use crate::slide::resample::{Filter, fit};

/// Most directories looked at: slides have a handful; a loop of IFD pointers must end.
const MAX_DIRECTORIES: usize = 64;
/// Largest chunk (tile or strip) decoded, in pixels: a region is read chunk by chunk, so this
/// bounds the memory one chunk can take (a striped image written as one strip is refused).
pub const MAX_CHUNK_PIXELS: u64 = 16 << 20;
/// Largest region returned by one read, in pixels.
pub const MAX_REGION_PIXELS: u64 = 64 << 20;
/// Largest side a slide may declare (Camelyon slides are about 200,000 px wide).
const MAX_SIDE: u32 = 1 << 20;

/// One resolution of the slide's pyramid.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Level {
    /// Index of the TIFF directory (IFD) holding it.
    pub directory: usize,
    pub width: u32,
    pub height: u32,
    /// Chunk size: the tile, or the full width by the rows per strip.
    pub chunk_width: u32,
    pub chunk_height: u32,
    pub tiled: bool,
    /// Level 0's width over this level's width (1 for level 0).
    pub downsample: f64,
    /// The TIFF compression code.
    pub compression: u16,
}

/// A TIFF-family slide opened for reading regions.
pub struct TiffSlide<R: Read + Seek> {
    decoder: Decoder<R>,
    /// The directory the decoder is positioned at.
    current: usize,
    levels: Vec<Level>,
    resolution: FileResolution,
    description: Option<String>,
}

impl<R: Read + Seek> std::fmt::Debug for TiffSlide<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiffSlide")
            .field("levels", &self.levels)
            .field("resolution", &self.resolution)
            .finish_non_exhaustive()
    }
}

fn tiff_error(e: tiff::TiffError) -> CelnetError {
    CelnetError::ImageDecode(format!("TIFF: {e}"))
}

/// The name of a compression code, for error messages.
fn compression_name(code: u16) -> String {
    match code {
        1 => "none".into(),
        5 => "LZW".into(),
        6 => "old-style JPEG".into(),
        JPEG => "JPEG".into(),
        8 | 32946 => "deflate".into(),
        32773 => "PackBits".into(),
        33003 | 33005 => format!("Aperio JPEG 2000 ({code})"),
        34712 => "JPEG 2000 (34712)".into(),
        50000 => "Zstandard (50000)".into(),
        other => format!("code {other}"),
    }
}

/// Compressions the reader decodes.
fn supported(code: u16) -> bool {
    matches!(code, 1 | 5 | JPEG | 8 | 32946 | 32773)
}

impl<R: Read + Seek> TiffSlide<R> {
    /// Reads the directories of a TIFF, BigTIFF or SVS file: which are pyramid levels (level 0
    /// and every reduced copy of it with the same aspect; labels, macros and other images are
    /// skipped) and the pixel size level 0 declares.
    pub fn open(reader: R) -> Result<TiffSlide<R>> {
        let mut decoder = Decoder::new(reader)
            .map_err(tiff_error)?
            .with_limits(Limits::default());
        let mut directories = Vec::new();
        let mut description = None;
        let mut resolution = FileResolution::Unknown;
        for index in 0..MAX_DIRECTORIES {
            if index > 0 {
                if !decoder.more_images() {
                    break;
                }
                decoder.next_image().map_err(tiff_error)?;
            }
            let (width, height) = decoder.dimensions().map_err(tiff_error)?;
            if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
                return Err(CelnetError::ImageDecode(format!(
                    "TIFF directory {index} declares {width}x{height} px, which no slide has"
                )));
            }
            let text = match decoder.find_tag(Tag::ImageDescription) {
                Ok(Some(Value::Ascii(text))) => Some(text),
                _ => None,
            };
            if index == 0 {
                resolution = tiff_resolution(&mut decoder);
                description = text.clone();
            }
            let compression = decoder
                .find_tag_unsigned::<u16>(Tag::Compression)
                .map_err(tiff_error)?
                .unwrap_or(1);
            let tiled = decoder
                .find_tag(Tag::TileWidth)
                .map_err(tiff_error)?
                .is_some();
            let (chunk_width, chunk_height) = decoder.chunk_dimensions();
            if chunk_width == 0 || chunk_height == 0 {
                return Err(CelnetError::ImageDecode(format!(
                    "TIFF directory {index} has chunks of {chunk_width}x{chunk_height} px"
                )));
            }
            let label = text.as_deref().is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                t.contains("label") || t.contains("macro")
            });
            directories.push((
                label,
                Level {
                    directory: index,
                    width,
                    height,
                    chunk_width,
                    chunk_height,
                    tiled,
                    downsample: 1.0,
                    compression,
                },
            ));
        }
        let (_, base) = directories[0].clone();
        let mut levels: Vec<Level> = directories
            .into_iter()
            .filter(|(label, level)| {
                let across = f64::from(base.width) / f64::from(level.width);
                let down = f64::from(base.height) / f64::from(level.height);
                // Same aspect within the rounding of the smaller side.
                let tolerance = across.max(down) / f64::from(level.width.min(level.height)) + 1e-9;
                let reduced = level.width <= base.width && level.height <= base.height;
                level.directory == 0
                    || (!label && reduced && (across - down).abs() <= 2.0 * tolerance)
            })
            .map(|(_, mut level)| {
                level.downsample = f64::from(base.width) / f64::from(level.width);
                level
            })
            .collect();
        levels.sort_by(|a, b| a.downsample.total_cmp(&b.downsample));
        levels.dedup_by(|a, b| (a.downsample - b.downsample).abs() < 1e-6);
        decoder.seek_to_image(0).map_err(tiff_error)?;
        Ok(TiffSlide {
            decoder,
            current: 0,
            levels,
            resolution,
            description,
        })
    }

    /// The reader the slide is read through.
    pub fn reader(&mut self) -> &mut R {
        self.decoder.inner()
    }

    /// Pyramid levels, finest first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Level `index`, or an error naming the levels there are.
    pub fn level(&self, index: usize) -> Result<&Level> {
        self.levels.get(index).ok_or_else(|| {
            CelnetError::InvalidParameter(format!(
                "level {index} does not exist; the slide has {}",
                self.levels.len()
            ))
        })
    }

    /// Level 0's size in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.levels[0].width, self.levels[0].height)
    }

    /// The pixel size level 0 declares.
    pub fn resolution(&self) -> FileResolution {
        self.resolution
    }

    /// Level 0's ImageDescription, if any (Aperio's carries the scanner and magnification).
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// See [`level_for`].
    pub fn level_for(&self, mpp: f64, target_mpp: f64) -> usize {
        level_for(&self.levels, mpp, target_mpp)
    }

    /// The `(x0, y0, x1, y1)` rectangle of `level` (its pixel coordinates, fractional edges
    /// rounded outwards) resized to `out_width` x `out_height`.
    fn read_resized(
        &mut self,
        level: usize,
        (x0, y0, x1, y1): (f64, f64, f64, f64),
        out_width: u32,
        out_height: u32,
    ) -> Result<RgbImage> {
        let info = self.level(level)?.clone();
        let (x, y, w, h) = pixel_span((x0, y0, x1, y1), info.width, info.height);
        let region = self.read_region(level, x, y, w, h)?;
        Ok(fit(region, out_width, out_height, Filter::Triangle))
    }

    /// A view of the `(x0, y0, x1, y1)` rectangle of level 0 at `out_width` x `out_height` px,
    /// read from the coarsest level that still has the detail (a viewer's tile).
    pub fn view(
        &mut self,
        (x0, y0, x1, y1): (f64, f64, f64, f64),
        out_width: u32,
        out_height: u32,
    ) -> Result<RgbImage> {
        let wanted =
            ((x1 - x0) / f64::from(out_width.max(1))).min((y1 - y0) / f64::from(out_height.max(1)));
        let level = self
            .levels
            .iter()
            .rposition(|l| l.downsample <= wanted * 1.01)
            .unwrap_or(0);
        let d = self.levels[level].downsample;
        self.read_resized(
            level,
            (x0 / d, y0 / d, x1 / d, y1 / d),
            out_width,
            out_height,
        )
    }

    /// The pixels of the `width` x `height` rectangle at `(x, y)` of `level` (its own pixel
    /// coordinates), decoding only the chunks it touches.
    pub fn read_region(
        &mut self,
        level: usize,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> Result<RgbImage> {
        let info = self.level(level)?.clone();
        let inside = u64::from(x) + u64::from(width) <= u64::from(info.width)
            && u64::from(y) + u64::from(height) <= u64::from(info.height);
        if width == 0 || height == 0 || !inside {
            return Err(CelnetError::InvalidParameter(format!(
                "region {width}x{height} at ({x}, {y}) is not inside level {level} ({}x{})",
                info.width, info.height
            )));
        }
        if u64::from(width) * u64::from(height) > MAX_REGION_PIXELS {
            return Err(CelnetError::ImageTooLarge {
                width,
                height,
                max_pixels: MAX_REGION_PIXELS,
                what: "largest region read at once",
            });
        }
        if !supported(info.compression) {
            return Err(CelnetError::ImageDecode(format!(
                "unsupported compression {} in level {level}; convert the slide to a tiled \
                 TIFF with JPEG, LZW or deflate (for example with vips or QuPath)",
                compression_name(info.compression)
            )));
        }
        if u64::from(info.chunk_width) * u64::from(info.chunk_height) > MAX_CHUNK_PIXELS {
            return Err(CelnetError::ImageDecode(format!(
                "level {level} is stored in chunks of {}x{} px, too large to read in parts; \
                 convert it to a tiled TIFF",
                info.chunk_width, info.chunk_height
            )));
        }
        if self.current != info.directory {
            self.decoder
                .seek_to_image(info.directory)
                .map_err(tiff_error)?;
            self.current = info.directory;
        }
        let colour = self.decoder.colortype().map_err(tiff_error)?;
        let planar = self
            .decoder
            .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
            .map_err(tiff_error)?;
        if planar.is_some_and(|p| p != 1) {
            return Err(CelnetError::ImageDecode(
                "planar (band-separated) TIFFs are not supported; convert the slide to \
                 interleaved RGB"
                    .into(),
            ));
        }
        let (cw, ch) = (info.chunk_width, info.chunk_height);
        let across = info.width.div_ceil(cw);
        let mut region = RgbImage::new(width, height);
        for cy in y / ch..=(y + height - 1) / ch {
            for cx in x / cw..=(x + width - 1) / cw {
                let index = cy * across + cx;
                let data = self.decoder.read_chunk(index).map_err(tiff_error)?;
                let (dw, dh) = self.decoder.chunk_data_dimensions(index);
                let rgb = to_rgb(data, colour, dw, dh)?;
                // Copy the part of the chunk inside the region.
                let (ox, oy) = (cx * cw, cy * ch);
                let (x0, x1) = (x.max(ox), (x + width).min(ox + dw));
                let (y0, y1) = (y.max(oy), (y + height).min(oy + dh));
                let row_len = ((x1 - x0) * 3) as usize;
                for py in y0..y1 {
                    let from = (((py - oy) * dw + (x0 - ox)) * 3) as usize;
                    let to = (((py - y) * width + (x0 - x)) * 3) as usize;
                    (*region)[to..to + row_len].copy_from_slice(&rgb[from..from + row_len]);
                }
            }
        }
        Ok(region)
    }
}

/// The coarsest of `levels` still at least as fine as `target_mpp` (within 5%), given level
/// 0's `mpp`: reading it and shrinking loses nothing the model could see.
pub fn level_for(levels: &[Level], mpp: f64, target_mpp: f64) -> usize {
    levels
        .iter()
        .rposition(|level| mpp * level.downsample <= target_mpp * 1.05)
        .unwrap_or(0)
}

/// TIFF's code for JPEG compression.
const JPEG: u16 = 7;

/// The whole pixels `(x, y, width, height)` covering the `(x0, y0, x1, y1)` rectangle (edges
/// rounded outwards), at least one pixel, inside a `width` x `height` image.
pub fn pixel_span(
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    width: u32,
    height: u32,
) -> (u32, u32, u32, u32) {
    let left = (x0.floor().max(0.0) as u32).min(width - 1);
    let top = (y0.floor().max(0.0) as u32).min(height - 1);
    let right = (x1.ceil() as u32).clamp(left + 1, width);
    let bottom = (y1.ceil() as u32).clamp(top + 1, height);
    (left, top, right - left, bottom - top)
}
