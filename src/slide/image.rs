//! Images at the model's scale, read region by region: an image in memory, or an opened input
//! seen through its pixel size ([`ScaledInput`]), so that a heatmap never needs a slide in
//! memory whole.

use std::io::{Read, Seek};
use std::rc::Rc;

use image::RgbImage;

use crate::error::{CelnetError, Result};
use crate::slide::file::OpenedImage;
use crate::slide::file::one_resolution;
use crate::slide::file::tiff::level_for;
use crate::slide::resample::{Filter, fit, resize};
use crate::slide::scale::{MODEL_MPP, ModelScale, PixelSize, to_model_scale};

/// An image at the model's scale, read region by region.
pub trait ModelScaleImage {
    /// Width and height in model-scale pixels.
    fn dimensions(&self) -> (usize, usize);

    /// The `width` x `height` px at `(x, y)`; the rectangle lies inside the image.
    fn region(&self, x: usize, y: usize, width: usize, height: usize) -> Result<RgbImage>;

    /// The whole image shrunk to `width` x `height` px, every source pixel averaged in.
    fn thumbnail(&self, width: u32, height: u32) -> Result<RgbImage>;
}

impl ModelScaleImage for RgbImage {
    fn dimensions(&self) -> (usize, usize) {
        (self.width() as usize, self.height() as usize)
    }

    fn region(&self, x: usize, y: usize, width: usize, height: usize) -> Result<RgbImage> {
        let (x, y, w, h) = (x as u32, y as u32, width as u32, height as u32);
        Ok(image::imageops::crop_imm(self, x, y, w, h).to_image())
    }

    fn thumbnail(&self, width: u32, height: u32) -> Result<RgbImage> {
        Ok(resize(self, width, height, Filter::Triangle))
    }
}

/// A thumbnail may be read from a level down to this fraction of its size.
const THUMBNAIL_LEVEL_SLACK: f64 = 0.75;

/// An opened input at the model's scale. A slide is read from the pyramid level nearest the
/// model's scale (at least as fine), tile by tile and resampled region by region, so a
/// heatmap over it needs memory for a tile of windows, not for the slide; a decoded image is
/// resampled once, whole.
#[derive(Debug)]
pub struct ScaledInput<R: Read + Seek> {
    input: Rc<OpenedImage<R>>,
    scale: ModelScale,
    /// A decoded image at the model's scale, where it had to be resampled.
    resampled: Option<RgbImage>,
    width: usize,
    height: usize,
}

impl<R: Read + Seek> ScaledInput<R> {
    /// `input`, whose full resolution has pixel size `size`, at the model's scale: read from
    /// `level` or, when none is given, from the coarsest level at least as fine as the model's
    /// scale.
    pub fn new(
        input: Rc<OpenedImage<R>>,
        size: &PixelSize,
        level: Option<usize>,
    ) -> Result<ScaledInput<R>> {
        let levels = input.levels();
        if let Some(image) = input.image() {
            if level.is_some_and(|l| l > 0) {
                return Err(one_resolution());
            }
            let scale = size.model_scale(0, 1.0);
            let resampled = match to_model_scale(image, scale.model_per_level) {
                std::borrow::Cow::Owned(resampled) => Some(resampled),
                std::borrow::Cow::Borrowed(_) => None,
            };
            let (width, height) = resampled.as_ref().unwrap_or(image).dimensions();
            return Ok(ScaledInput {
                scale,
                resampled,
                width: width as usize,
                height: height as usize,
                input,
            });
        }
        let level = match level {
            Some(level) if level >= levels.len() => {
                return Err(CelnetError::InvalidParameter(format!(
                    "level {level} does not exist; the slide has levels 0 to {}",
                    levels.len() - 1
                )));
            }
            Some(level) => level,
            None => level_for(levels, size.mpp, MODEL_MPP),
        };
        let info = &levels[level];
        let scale = size.model_scale(level, info.downsample);
        Ok(ScaledInput {
            width: scale.model_side(info.width),
            height: scale.model_side(info.height),
            scale,
            resampled: None,
            input,
        })
    }

    /// How the model's pixels map onto the input's.
    pub fn scale(&self) -> ModelScale {
        self.scale
    }

    /// The opened input.
    pub fn input(&self) -> &Rc<OpenedImage<R>> {
        &self.input
    }

    /// A decoded input at the model's scale, if it was decoded.
    fn decoded(&self) -> Option<&RgbImage> {
        self.resampled.as_ref().or(self.input.image())
    }
}

impl<R: Read + Seek> ModelScaleImage for ScaledInput<R> {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn region(&self, x: usize, y: usize, width: usize, height: usize) -> Result<RgbImage> {
        if let Some(image) = self.decoded() {
            return image.region(x, y, width, height);
        }
        let s = self.scale.level_per_model();
        let rect = (
            x as f64 * s,
            y as f64 * s,
            (x + width) as f64 * s,
            (y + height) as f64 * s,
        );
        self.input
            .read_resized(self.scale.level, rect, width as u32, height as u32)
    }

    /// A slide is read in bands from the coarsest level at least about as large as the
    /// thumbnail (within [`THUMBNAIL_LEVEL_SLACK`]: a level a few percent smaller, slightly
    /// enlarged, serves as well as one 4x larger that costs 16x the decoding).
    fn thumbnail(&self, width: u32, height: u32) -> Result<RgbImage> {
        if let Some(image) = self.decoded() {
            return image.thumbnail(width, height);
        }
        let levels = self.input.levels();
        let level = levels
            .iter()
            .rposition(|l| {
                f64::from(l.width) >= f64::from(width) * THUMBNAIL_LEVEL_SLACK
                    && f64::from(l.height) >= f64::from(height) * THUMBNAIL_LEVEL_SLACK
            })
            .unwrap_or(0);
        let (level_width, level_height) = (levels[level].width, levels[level].height);
        let sy = f64::from(level_height) / f64::from(height);
        // Bands of thumbnail rows whose source stays within a few million pixels.
        let band = ((4 << 20) as f64 / (f64::from(level_width) * sy)).max(1.0) as u32;
        let bands: Vec<(u32, u32)> = (0..height)
            .step_by(band as usize)
            .map(|top| (top, band.min(height - top)))
            .collect();
        let mut thumbnail = RgbImage::new(width, height);
        // Bands are decoded in turn (one reader) and shrunk side by side natively, one per
        // core at a time: shrinking took most of a thumbnail's time.
        #[cfg(not(target_arch = "wasm32"))]
        let at_once = rayon::current_num_threads().max(1);
        #[cfg(target_arch = "wasm32")]
        let at_once = 1;
        for group in bands.chunks(at_once) {
            let spans = group
                .iter()
                .map(|&(top, rows)| {
                    let (y0, y1) = (f64::from(top) * sy, f64::from(top + rows) * sy);
                    let rect = (0.0, y0, f64::from(level_width), y1);
                    Ok((self.input.read_span(level, rect)?, rows))
                })
                .collect::<Result<Vec<_>>>()?;
            #[cfg(not(target_arch = "wasm32"))]
            let parts: Vec<RgbImage> = {
                use rayon::prelude::*;
                spans
                    .into_par_iter()
                    .map(|(span, rows)| fit(span, width, rows, Filter::Triangle))
                    .collect()
            };
            #[cfg(target_arch = "wasm32")]
            let parts: Vec<RgbImage> = spans
                .into_iter()
                .map(|(span, rows)| fit(span, width, rows, Filter::Triangle))
                .collect();
            for (part, &(top, _)) in parts.iter().zip(group) {
                image::imageops::replace(&mut thumbnail, part, 0, i64::from(top));
            }
        }
        Ok(thumbnail)
    }
}
