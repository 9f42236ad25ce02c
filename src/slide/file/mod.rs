//! Opening an input: TIFF-family slides ([`tiff`]) and DICOM whole-slide images ([`dicom`])
//! read tile by tile, anything else decoded whole, with the pixel size the file declares
//! ([`resolution`]). This layer knows files, not the model: nothing here depends on the
//! analysis above it.

pub mod colour;
pub mod dicom;
pub mod jpeg2000;
pub mod resolution;
mod sub_ifd;
pub mod tiff;

use std::cell::RefCell;
use std::io::{Read, Seek};

use image::RgbImage;

use crate::error::{CelnetError, Result};
use crate::slide::resample::{Filter, fit};
use crate::slide::scale::is_glimpse;
use dicom::DicomSlide;
use resolution::{FileResolution, file_resolution};
use tiff::{Level, MAX_CHUNK_PIXELS, TiffSlide, pixel_span};

/// Largest side of a view ([`OpenedImage::view`]).
pub const MAX_VIEW_SIDE: u32 = 4096;

/// An image file opened the way its format allows: a TIFF or SVS whose chunks are small enough
/// is read tile by tile and never whole; anything else is decoded whole (within the decoder's
/// size limit). Reads take `&self`, so one opened file serves a viewer and an analysis at once.
pub struct OpenedImage<R: Read + Seek> {
    pixels: Pixels<R>,
    resolution: FileResolution,
    levels: Vec<Level>,
    /// The file's format and, for slides, level 0's compression, for people to read.
    format: String,
}

enum Pixels<R: Read + Seek> {
    Tiff(Box<RefCell<TiffSlide<R>>>),
    Dicom(Box<RefCell<DicomSlide<R>>>),
    Decoded(RgbImage),
}

impl<R: Read + Seek> std::fmt::Debug for OpenedImage<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedImage")
            .field("tiled", &self.is_tiled())
            .field("levels", &self.levels)
            .field("resolution", &self.resolution)
            .field("format", &self.format)
            .finish()
    }
}

impl<R: Read + Seek> OpenedImage<R> {
    /// Opens the file `reader` reads: TIFF-family files whose level 0 comes in chunks of at
    /// most [`MAX_CHUNK_PIXELS`] and DICOM whole-slide images as slides, everything else read
    /// whole and decoded.
    pub fn open(mut reader: R) -> Result<OpenedImage<R>> {
        let io = |e: std::io::Error| CelnetError::ImageDecode(format!("cannot read the file: {e}"));
        // Enough for TIFF's magic number and DICOM's preamble and prefix.
        let mut head = Vec::with_capacity(132);
        (&mut reader).take(132).read_to_end(&mut head).map_err(io)?;
        let magic = head.get(..4).unwrap_or_default();
        let is_tiff = matches!(magic, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+");
        reader.rewind().map_err(io)?;
        if head.get(128..132) == Some(&b"DICM"[..]) {
            return Self::dicom(vec![reader]);
        }
        let mut bytes = Vec::new();
        if is_tiff {
            let mut slide = TiffSlide::open(reader)?;
            let base = &slide.levels()[0];
            if u64::from(base.chunk_width) * u64::from(base.chunk_height) <= MAX_CHUNK_PIXELS {
                // One pixel decoded now: a compression it cannot read fails here, not later.
                slide.read_region(0, 0, 0, 1, 1)?;
                let big = matches!(magic, b"II+\0" | b"MM\0+");
                return Ok(OpenedImage {
                    resolution: slide.resolution(),
                    levels: slide.levels().to_vec(),
                    format: slide.format(big),
                    pixels: Pixels::Tiff(Box::new(RefCell::new(slide))),
                });
            }
            // Chunks too large to read one at a time: decoded whole, within limits.
            bytes = slide.read_all()?;
        } else {
            reader.read_to_end(&mut bytes).map_err(io)?;
        }
        let mut opened =
            Self::decoded(crate::input::decode_image(&bytes)?, file_resolution(&bytes));
        if let Ok(format) = image::guess_format(&bytes) {
            opened.format = format!("{format:?}").to_uppercase();
        }
        Ok(opened)
    }

    /// Opens the files of one slide: one file as [`OpenedImage::open`] does, several as the
    /// files of a DICOM whole-slide image (one per level, in any order).
    pub fn open_files(mut readers: Vec<R>) -> Result<OpenedImage<R>> {
        match readers.len() {
            0 => Err(CelnetError::InvalidParameter("no file to open".into())),
            1 => Self::open(readers.pop().expect("one reader")),
            _ => Self::dicom(readers),
        }
    }

    /// Opens a DICOM whole-slide image from its files.
    fn dicom(readers: Vec<R>) -> Result<OpenedImage<R>> {
        let mut slide = DicomSlide::open(readers)?;
        let base = slide.levels()[0].clone();
        let levels = slide
            .levels()
            .iter()
            .map(|l| Level {
                chain: 0,
                directory: l.file,
                width: l.width,
                height: l.height,
                chunk_width: l.tile_width,
                chunk_height: l.tile_height,
                tiled: true,
                downsample: f64::from(base.width) / f64::from(l.width),
                compression: 0,
            })
            .collect();
        // One pixel decoded now: a frame it cannot read fails here, not later.
        slide.read_region(0, (0, 0, 1, 1))?;
        Ok(OpenedImage {
            resolution: slide
                .mpp()
                .map_or(FileResolution::Unknown, FileResolution::from_mpp),
            levels,
            format: format!("DICOM WSI, {}", dicom::codec_name(&base)),
            pixels: Pixels::Dicom(Box::new(RefCell::new(slide))),
        })
    }

    /// An image already decoded, with the pixel size its file declared.
    pub fn decoded(image: RgbImage, resolution: FileResolution) -> OpenedImage<R> {
        let (width, height) = image.dimensions();
        OpenedImage {
            pixels: Pixels::Decoded(image),
            resolution,
            levels: vec![Level {
                width,
                height,
                downsample: 1.0,
                ..Level::default()
            }],
            format: "image".into(),
        }
    }

    /// Full-resolution width and height.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.levels[0].width, self.levels[0].height)
    }

    /// The pixel size the file declares.
    pub fn resolution(&self) -> FileResolution {
        self.resolution
    }

    /// The file's format and, for slides, level 0's compression: "Aperio SVS, Aperio JPEG
    /// 2000 (33005)", "OME-TIFF, LZW", "PNG".
    pub fn format(&self) -> &str {
        &self.format
    }

    /// Resolutions, finest first (one for a decoded image).
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Whether the file is read tile by tile (a slide) rather than decoded whole.
    pub fn is_tiled(&self) -> bool {
        !matches!(self.pixels, Pixels::Decoded(_))
    }

    /// The decoded image, for inputs decoded whole.
    pub fn image(&self) -> Option<&RgbImage> {
        match &self.pixels {
            Pixels::Decoded(image) => Some(image),
            Pixels::Tiff(_) | Pixels::Dicom(_) => None,
        }
    }

    /// Whether the input is one glimpse, scored whole, rather than a field of view or a slide
    /// scored window by window: one resolution, no larger than
    /// [`crate::slide::scale::GLIMPSE_MAX_SIDE`] a side.
    pub fn is_glimpse(&self) -> bool {
        let (width, height) = self.dimensions();
        self.levels.len() == 1 && is_glimpse(width, height)
    }

    /// The whole pixels covering the `(x0, y0, x1, y1)` rectangle of `level` (its pixel
    /// coordinates, fractional edges rounded outwards), unresized; [`fit`] resizes them, on
    /// another thread where the caller wants.
    pub fn read_span(&self, level: usize, rect: (f64, f64, f64, f64)) -> Result<RgbImage> {
        let Some(info) = self.levels.get(level) else {
            return Err(CelnetError::InvalidParameter(format!(
                "level {level} does not exist; the image has levels 0 to {}",
                self.levels.len() - 1
            )));
        };
        let (x, y, w, h) = pixel_span(rect, info.width, info.height);
        match &self.pixels {
            Pixels::Tiff(slide) => slide.borrow_mut().read_region(level, x, y, w, h),
            Pixels::Dicom(slide) => slide.borrow_mut().read_region(level, (x, y, w, h)),
            Pixels::Decoded(_) if level > 0 => Err(one_resolution()),
            Pixels::Decoded(image) => Ok(image::imageops::crop_imm(image, x, y, w, h).to_image()),
        }
    }

    /// The `(x0, y0, x1, y1)` rectangle of `level` (its pixel coordinates, fractional edges
    /// rounded outwards) resized to `out_width` x `out_height`: [`fit`] of
    /// [`OpenedImage::read_span`].
    pub fn read_resized(
        &self,
        level: usize,
        rect: (f64, f64, f64, f64),
        out_width: u32,
        out_height: u32,
    ) -> Result<RgbImage> {
        Ok(fit(
            self.read_span(level, rect)?,
            out_width,
            out_height,
            Filter::Triangle,
        ))
    }

    /// A view of the `(x0, y0, x1, y1)` rectangle of the full-resolution image at `out_width`
    /// x `out_height` px (a viewer's tile, at most [`MAX_VIEW_SIDE`] a side), read from the
    /// coarsest level that still has the detail.
    pub fn view(
        &self,
        rect: (f64, f64, f64, f64),
        out_width: u32,
        out_height: u32,
    ) -> Result<RgbImage> {
        let (x0, y0, x1, y1) = rect;
        let sides = 1..=MAX_VIEW_SIDE;
        if !(sides.contains(&out_width) && sides.contains(&out_height) && x1 > x0 && y1 > y0) {
            return Err(CelnetError::InvalidParameter(format!(
                "a view must be 1 to {MAX_VIEW_SIDE} px a side, of a rectangle with area"
            )));
        }
        match &self.pixels {
            Pixels::Tiff(slide) => slide.borrow_mut().view(rect, out_width, out_height),
            Pixels::Dicom(slide) => {
                let mut slide = slide.borrow_mut();
                pyramid_view(&self.levels, rect, out_width, out_height, |level, span| {
                    slide.read_region(level, span)
                })
            }
            Pixels::Decoded(image) => {
                // Nearest neighbour when shrinking a lot: a viewer tile need not average
                // millions of pixels.
                let (_, _, width, _) = pixel_span(rect, image.width(), image.height());
                let filter = if width > 4 * out_width {
                    Filter::Nearest
                } else {
                    Filter::Triangle
                };
                Ok(resized_span(image, rect, out_width, out_height, filter))
            }
        }
    }
}

/// A view of the `(x0, y0, x1, y1)` rectangle of level 0 at `out_width` x `out_height` px,
/// from the coarsest of `levels` that still has the detail, whose `(x, y, width, height)`
/// pixels `read` returns.
pub(crate) fn pyramid_view(
    levels: &[Level],
    (x0, y0, x1, y1): (f64, f64, f64, f64),
    out_width: u32,
    out_height: u32,
    mut read: impl FnMut(usize, (u32, u32, u32, u32)) -> Result<RgbImage>,
) -> Result<RgbImage> {
    let wanted =
        ((x1 - x0) / f64::from(out_width.max(1))).min((y1 - y0) / f64::from(out_height.max(1)));
    let level = levels
        .iter()
        .rposition(|l| l.downsample <= wanted * 1.01)
        .unwrap_or(0);
    let info = &levels[level];
    let d = info.downsample;
    let span = pixel_span((x0 / d, y0 / d, x1 / d, y1 / d), info.width, info.height);
    Ok(fit(
        read(level, span)?,
        out_width,
        out_height,
        Filter::Triangle,
    ))
}

/// The error for a pyramid level asked of an image that has one resolution.
pub fn one_resolution() -> CelnetError {
    CelnetError::InvalidParameter(
        "the image has one resolution; pyramid levels apply to pyramidal TIFF and SVS files".into(),
    )
}

/// The whole pixels covering `rect` of `image`, resized to `width` x `height` with `filter`.
fn resized_span(
    image: &RgbImage,
    rect: (f64, f64, f64, f64),
    width: u32,
    height: u32,
    filter: Filter,
) -> RgbImage {
    let (x, y, w, h) = pixel_span(rect, image.width(), image.height());
    let crop = image::imageops::crop_imm(image, x, y, w, h).to_image();
    fit(crop, width, height, filter)
}
