//! Slide files: tiled, striped and pyramidal TIFF, BigTIFF and Aperio SVS, read region by region
//! through any `Read + Seek` (a file natively, slices of a local `File` in the browser), so a
//! slide never has to be in memory whole.
//!
//! The `tiff` crate parses the directories and decompresses chunks (none, LZW, deflate,
//! PackBits, JPEG with shared JPEGTables); this module picks the pyramid levels, turns every
//! colour layout it decodes into RGB and refuses what it cannot decode, such as Aperio's
//! JPEG 2000, with a clear error.

use std::cell::RefCell;
use std::io::{Read, Seek};

use image::RgbImage;
use image::imageops::FilterType;
use serde::Serialize;
use tiff::ColorType;
use tiff::decoder::ifd::Value;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use crate::error::{CelnetError, Result};
use crate::heatmap::ModelScaleImage;
use crate::scale::{FileResolution, MODEL_MPP, MppSource, PixelSize, aperio_mpp};

/// Most directories looked at: slides have a handful; a loop of IFD pointers must end.
const MAX_DIRECTORIES: usize = 64;
/// Largest chunk (tile or strip) decoded, in pixels: a region is read chunk by chunk, so this
/// bounds the memory one chunk can take (a striped image written as one strip is refused).
pub const MAX_CHUNK_PIXELS: u64 = 16 << 20;
/// Largest region returned by one read, in pixels.
pub const MAX_REGION_PIXELS: u64 = 64 << 20;
/// A thumbnail may be read from a level down to this fraction of its size.
const THUMBNAIL_LEVEL_SLACK: f64 = 0.75;
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

/// A slide opened for reading regions.
pub struct Slide<R: Read + Seek> {
    decoder: Decoder<R>,
    /// The directory the decoder is positioned at.
    current: usize,
    levels: Vec<Level>,
    resolution: FileResolution,
    description: Option<String>,
}

impl<R: Read + Seek> std::fmt::Debug for Slide<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slide")
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

impl<R: Read + Seek> Slide<R> {
    /// Reads the directories of a TIFF, BigTIFF or SVS file: which are pyramid levels (level 0
    /// and every reduced copy of it with the same aspect; labels, macros and other images are
    /// skipped) and the pixel size level 0 declares.
    pub fn open(reader: R) -> Result<Slide<R>> {
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
                resolution = text
                    .as_deref()
                    .and_then(aperio_mpp)
                    .map(FileResolution::from_mpp)
                    .unwrap_or_else(|| crate::scale::tiff_resolution(&mut decoder));
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
        Ok(Slide {
            decoder,
            current: 0,
            levels,
            resolution,
            description,
        })
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

    /// The coarsest level still at least as fine as `target_mpp` (within 5%), given level 0's
    /// `mpp`: reading it and shrinking loses nothing the model could see.
    pub fn level_for(&self, mpp: f64, target_mpp: f64) -> usize {
        self.levels
            .iter()
            .rposition(|level| mpp * level.downsample <= target_mpp * 1.05)
            .unwrap_or(0)
    }

    /// The `(x0, y0, x1, y1)` rectangle of `level` (its pixel coordinates, fractional edges
    /// rounded outwards) resized to `out_width` x `out_height`.
    pub fn read_resized(
        &mut self,
        level: usize,
        (x0, y0, x1, y1): (f64, f64, f64, f64),
        out_width: u32,
        out_height: u32,
    ) -> Result<RgbImage> {
        let info = self.level(level)?.clone();
        let (x, y, w, h) = pixel_span((x0, y0, x1, y1), info.width, info.height);
        let region = self.read_region(level, x, y, w, h)?;
        if region.dimensions() == (out_width, out_height) {
            return Ok(region);
        }
        Ok(image::imageops::resize(
            &region,
            out_width,
            out_height,
            FilterType::Triangle,
        ))
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
                for py in y0..y1 {
                    for px in x0..x1 {
                        let i = (((py - oy) * dw + (px - ox)) * 3) as usize;
                        region.put_pixel(
                            px - x,
                            py - y,
                            image::Rgb([rgb[i], rgb[i + 1], rgb[i + 2]]),
                        );
                    }
                }
            }
        }
        Ok(region)
    }
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

/// An image file opened the way its format allows.
pub enum OpenedImage<R: Read + Seek> {
    /// A TIFF or SVS whose chunks are small enough: read tile by tile, never whole.
    Slide(Box<Slide<R>>),
    /// Anything else, decoded whole (within the decoder's size limit), with the pixel size the
    /// file declares.
    Decoded(RgbImage, FileResolution),
}

impl<R: Read + Seek> OpenedImage<R> {
    /// Opens the file `reader` reads: TIFF-family files whose level 0 comes in chunks of at
    /// most [`MAX_CHUNK_PIXELS`] as slides, everything else read whole and decoded.
    pub fn open(mut reader: R) -> Result<OpenedImage<R>> {
        let io = |e: std::io::Error| CelnetError::ImageDecode(format!("cannot read the file: {e}"));
        let mut magic = [0u8; 4];
        let tiff = reader.read_exact(&mut magic).is_ok()
            && matches!(&magic, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+");
        reader.rewind().map_err(io)?;
        if tiff {
            let mut slide = Slide::open(reader)?;
            let base = &slide.levels()[0];
            if u64::from(base.chunk_width) * u64::from(base.chunk_height) <= MAX_CHUNK_PIXELS {
                // One pixel decoded now: a compression it cannot read fails here, not later.
                slide.read_region(0, 0, 0, 1, 1)?;
                return Ok(OpenedImage::Slide(Box::new(slide)));
            }
            // Chunks too large to read one at a time: decoded whole, within limits.
            let mut bytes = Vec::new();
            let reader = slide.decoder.inner();
            reader.rewind().map_err(io)?;
            reader.read_to_end(&mut bytes).map_err(io)?;
            return decoded(&bytes);
        }
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(io)?;
        decoded(&bytes)
    }

    /// Full-resolution width and height.
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            OpenedImage::Slide(slide) => slide.dimensions(),
            OpenedImage::Decoded(image, _) => image.dimensions(),
        }
    }

    /// The pixel size the file declares.
    pub fn resolution(&self) -> FileResolution {
        match self {
            OpenedImage::Slide(slide) => slide.resolution(),
            OpenedImage::Decoded(_, resolution) => *resolution,
        }
    }
}

fn decoded<R: Read + Seek>(bytes: &[u8]) -> Result<OpenedImage<R>> {
    let image = crate::input::decode_image(bytes)?;
    Ok(OpenedImage::Decoded(
        image,
        crate::scale::file_resolution(bytes),
    ))
}

/// A slide seen at the model's scale: the pyramid level nearest to it (at least as fine), read
/// tile by tile and resampled region by region. Regions are read on demand, so a heatmap over
/// the slide needs memory for a tile of windows, not for the slide.
#[derive(Debug)]
pub struct ScaledSlide<R: Read + Seek> {
    slide: RefCell<Slide<R>>,
    level: usize,
    /// Level pixels per model-scale pixel (1 when the level is at the model's scale).
    scale: f64,
    width: usize,
    height: usize,
}

impl<R: Read + Seek> ScaledSlide<R> {
    /// `slide`, whose level 0 has `mpp` µm/px, at the model's scale, read from `level` or, when
    /// none is given, from the coarsest level at least as fine as the model's scale.
    pub fn new(slide: Slide<R>, mpp: f64, level: Option<usize>) -> Result<ScaledSlide<R>> {
        let count = slide.levels().len();
        let level = match level {
            Some(level) if level >= count => {
                return Err(CelnetError::InvalidParameter(format!(
                    "level {level} does not exist; the slide has levels 0 to {}",
                    count - 1
                )));
            }
            Some(level) => level,
            None => slide.level_for(mpp, MODEL_MPP),
        };
        let info = &slide.levels()[level];
        let size = PixelSize {
            mpp: mpp * info.downsample,
            source: MppSource::File,
        };
        let factor = size.factor();
        let side = |v: u32| (f64::from(v) * factor).round() as usize;
        let (width, height) = (side(info.width), side(info.height));
        Ok(ScaledSlide {
            level,
            scale: factor.recip(),
            width,
            height,
            slide: RefCell::new(slide),
        })
    }

    /// The pyramid level read.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Level-0 pixels per model-scale pixel: multiply model-scale coordinates by it to get the
    /// slide's full-resolution coordinates.
    pub fn to_level0(&self) -> f64 {
        self.slide.borrow().levels()[self.level].downsample * self.scale
    }

    /// The slide itself, for reads at other levels (a viewer's tiles).
    pub fn with_slide<T>(&self, f: impl FnOnce(&mut Slide<R>) -> T) -> T {
        f(&mut self.slide.borrow_mut())
    }

    /// The slide, to be seen at another scale.
    pub fn into_slide(self) -> Slide<R> {
        self.slide.into_inner()
    }

    fn read_resized(
        &self,
        level: usize,
        rect: (f64, f64, f64, f64),
        out_width: u32,
        out_height: u32,
    ) -> Result<RgbImage> {
        self.slide
            .borrow_mut()
            .read_resized(level, rect, out_width, out_height)
    }
}

impl<R: Read + Seek> ModelScaleImage for ScaledSlide<R> {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn region(&self, x: usize, y: usize, width: usize, height: usize) -> Result<RgbImage> {
        let s = self.scale;
        let rect = (
            x as f64 * s,
            y as f64 * s,
            (x + width) as f64 * s,
            (y + height) as f64 * s,
        );
        self.read_resized(self.level, rect, width as u32, height as u32)
    }

    /// Read in bands from the coarsest level at least about as large as the thumbnail (within
    /// [`THUMBNAIL_LEVEL_SLACK`]: a level a few percent smaller, slightly enlarged, serves as
    /// well as one 4x larger that costs 16x the decoding).
    fn thumbnail(&self, width: u32, height: u32) -> Result<RgbImage> {
        let (level, level_width, level_height) = {
            let slide = self.slide.borrow();
            let levels = slide.levels();
            let level = levels
                .iter()
                .rposition(|l| {
                    f64::from(l.width) >= f64::from(width) * THUMBNAIL_LEVEL_SLACK
                        && f64::from(l.height) >= f64::from(height) * THUMBNAIL_LEVEL_SLACK
                })
                .unwrap_or(0);
            (level, levels[level].width, levels[level].height)
        };
        let sy = f64::from(level_height) / f64::from(height);
        // Bands of thumbnail rows whose source stays within a few million pixels.
        let band = ((4 << 20) as f64 / (f64::from(level_width) * sy)).max(1.0) as u32;
        let mut thumbnail = RgbImage::new(width, height);
        let mut top = 0;
        while top < height {
            let rows = band.min(height - top);
            let rect = (
                0.0,
                f64::from(top) * sy,
                f64::from(level_width),
                f64::from(top + rows) * sy,
            );
            let part = self.read_resized(level, rect, width, rows)?;
            image::imageops::replace(&mut thumbnail, &part, 0, i64::from(top));
            top += rows;
        }
        Ok(thumbnail)
    }
}

/// A decoded chunk of `width` x `height` pixels as interleaved 8-bit RGB. YCbCr (JPEG tiles
/// with PhotometricInterpretation 6: the `tiff` crate returns their samples unconverted) is
/// converted here.
fn to_rgb(data: DecodingResult, colour: ColorType, width: u32, height: u32) -> Result<Vec<u8>> {
    let pixels = (width * height) as usize;
    let samples: Vec<u8> = match data {
        DecodingResult::U8(v) => v,
        // 16-bit samples keep their high byte.
        DecodingResult::U16(v) => v.into_iter().map(|s| (s >> 8) as u8).collect(),
        _ => {
            return Err(CelnetError::ImageDecode(format!(
                "TIFF samples of type {colour:?} are not supported; use 8 or 16 bits per sample"
            )));
        }
    };
    let per_pixel = match colour {
        ColorType::Gray(8 | 16) => 1,
        ColorType::GrayA(8 | 16) => 2,
        ColorType::RGB(8 | 16) | ColorType::YCbCr(8) => 3,
        ColorType::RGBA(8 | 16) => 4,
        other => {
            return Err(CelnetError::ImageDecode(format!(
                "TIFF colour type {other:?} is not supported; use RGB, YCbCr or greyscale"
            )));
        }
    };
    if samples.len() < pixels * per_pixel {
        return Err(CelnetError::ImageDecode(format!(
            "a TIFF chunk holds {} samples where {width}x{height} px need {}",
            samples.len(),
            pixels * per_pixel
        )));
    }
    let mut rgb = Vec::with_capacity(pixels * 3);
    for p in samples.chunks_exact(per_pixel).take(pixels) {
        match colour {
            ColorType::Gray(_) | ColorType::GrayA(_) => {
                let v = if per_pixel == 2 {
                    over_white(p[0], p[1])
                } else {
                    p[0]
                };
                rgb.extend_from_slice(&[v, v, v]);
            }
            ColorType::RGBA(_) => {
                rgb.extend(p[..3].iter().map(|&c| over_white(c, p[3])));
            }
            ColorType::YCbCr(_) => rgb.extend_from_slice(&ycbcr_to_rgb(p[0], p[1], p[2])),
            _ => rgb.extend_from_slice(&p[..3]),
        }
    }
    Ok(rgb)
}

/// A sample with coverage `alpha` over white glass.
fn over_white(value: u8, alpha: u8) -> u8 {
    let a = u32::from(alpha);
    ((u32::from(value) * a + 255 * (255 - a) + 127) / 255) as u8
}

/// JFIF's full-range YCbCr to RGB (ITU-R BT.601), as TIFF JPEG tiles use it.
pub fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycbcr_greys_and_primaries() {
        assert_eq!(ycbcr_to_rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(ycbcr_to_rgb(0, 128, 128), [0, 0, 0]);
        // Pure red in JFIF: Y 76, Cb 85, Cr 255.
        let [r, g, b] = ycbcr_to_rgb(76, 85, 255);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
    }

    #[test]
    fn transparency_is_glass() {
        assert_eq!(over_white(10, 0), 255);
        assert_eq!(over_white(10, 255), 10);
    }
}
