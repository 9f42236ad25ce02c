//! Pixel size: the one an image is scored at and why, and how the pixels the model sees map
//! onto the input's.
//!
//! CELNet saw PCam glimpses at about 1 µm/px (10x), so a score only means something at that
//! scale: a 40x field of view must be shrunk four times before it is scored.

use std::borrow::Cow;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{CelnetError, Result};
pub use crate::slide::file::resolution::{FileResolution, PLAUSIBLE_MPP};
use crate::slide::resample::{Filter, resize};

/// Micrometres per pixel of the PCam patches the network was trained on (Camelyon16 level 2).
pub const MODEL_MPP: f64 = 0.972;

/// Scales within this relative distance of [`MODEL_MPP`] are used as they are (PCam's own
/// 0.972 and the usual "10x = 1 µm/px" differ by 3%).
pub const SCALE_TOLERANCE: f64 = 0.05;

/// The pixel size assumed for glimpses without metadata (see [`is_glimpse`]).
pub const ASSUMED_GLIMPSE_MPP: f64 = 1.0;

/// Largest side of a glimpse: an image no larger than this a side (and of one resolution) is
/// scored whole as one glimpse, at 1 µm/px unless its file says otherwise. Anything larger is
/// a field of view or a slide, scored window by window at its own pixel size. PCam glimpses are
/// 96 px; crops a little larger are glimpses too.
pub const GLIMPSE_MAX_SIDE: u32 = 128;

/// How common magnifications translate into pixel sizes, for people asked to give one.
pub const MAGNIFICATION_HINT: &str = "0.25 µm/px ≈ 40x, 0.5 ≈ 20x, 1.0 ≈ 10x";

/// Whether a `width` x `height` image is a glimpse ([`GLIMPSE_MAX_SIDE`]).
pub fn is_glimpse(width: u32, height: u32) -> bool {
    width <= GLIMPSE_MAX_SIDE && height <= GLIMPSE_MAX_SIDE
}

/// Where a pixel size came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MppSource {
    /// The file's metadata.
    File,
    /// The user (`--mpp`, or the page's field).
    User,
    /// Assumed for a small glimpse without metadata: [`ASSUMED_GLIMPSE_MPP`].
    AssumedGlimpse,
}

impl MppSource {
    /// How a report says where the pixel size came from.
    pub fn describe(self) -> &'static str {
        match self {
            MppSource::File => "from the file",
            MppSource::User => "given",
            MppSource::AssumedGlimpse => "assumed for a glimpse",
        }
    }
}

/// The pixel size an image is scored at, and why.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PixelSize {
    /// Micrometres per pixel of the image as given (its full resolution).
    pub mpp: f64,
    pub source: MppSource,
}

impl PixelSize {
    /// Decides the pixel size of a `width` x `height` image: the user's value first, then the
    /// file's, then 1 µm/px for glimpses ([`is_glimpse`]); anything else is an error that says
    /// how to give it.
    pub fn resolve(
        user: Option<f64>,
        file: FileResolution,
        width: u32,
        height: u32,
    ) -> Result<PixelSize> {
        if let Some(mpp) = user {
            if !PLAUSIBLE_MPP.contains(&mpp) {
                return Err(CelnetError::InvalidParameter(format!(
                    "a pixel size of {mpp} µm/px is not a microscope's; give one between {} and {} ({MAGNIFICATION_HINT})",
                    PLAUSIBLE_MPP.start(),
                    PLAUSIBLE_MPP.end()
                )));
            }
            return Ok(PixelSize {
                mpp,
                source: MppSource::User,
            });
        }
        match file {
            FileResolution::Found(mpp) => Ok(PixelSize {
                mpp,
                source: MppSource::File,
            }),
            _ if is_glimpse(width, height) => Ok(PixelSize {
                mpp: ASSUMED_GLIMPSE_MPP,
                source: MppSource::AssumedGlimpse,
            }),
            other => Err(CelnetError::UnknownPixelSize {
                width,
                height,
                declared: other.implausible(),
            }),
        }
    }

    /// How much the image must be scaled to reach [`MODEL_MPP`]: output side = input side x
    /// factor (0.5 for a 0.486 µm/px scan). 1 within [`SCALE_TOLERANCE`].
    pub fn factor(&self) -> f64 {
        model_per_pixel(self.mpp)
    }

    /// How the model's pixels map onto this image's when pyramid level `level`, `downsample`
    /// times smaller than full resolution, is read.
    pub fn model_scale(&self, level: usize, downsample: f64) -> ModelScale {
        ModelScale {
            level,
            downsample,
            model_per_level: model_per_pixel(self.mpp * downsample),
        }
    }
}

/// Model-scale pixels per pixel of an image at `mpp` µm/px, snapped to 1 within
/// [`SCALE_TOLERANCE`].
fn model_per_pixel(mpp: f64) -> f64 {
    let factor = mpp / MODEL_MPP;
    if (factor - 1.0).abs() <= SCALE_TOLERANCE {
        1.0
    } else {
        factor
    }
}

/// How the pixels the model sees map onto the input's: the pyramid level read and how it is
/// resampled. Multiply model-scale coordinates by [`ModelScale::input_per_model`] to get the
/// input's full-resolution pixels; the scale is decided at the level read, so a level within
/// [`SCALE_TOLERANCE`] of the model's scale is read as it is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelScale {
    /// The pyramid level read (0 for images of one resolution).
    pub level: usize,
    /// Level 0's width over the level's (1 for level 0).
    pub downsample: f64,
    /// Model-scale pixels per pixel of the level read.
    pub model_per_level: f64,
}

impl ModelScale {
    /// The identity: the input is at the model's scale.
    pub const NONE: ModelScale = ModelScale {
        level: 0,
        downsample: 1.0,
        model_per_level: 1.0,
    };

    /// Pixels of the level read per model-scale pixel.
    pub fn level_per_model(&self) -> f64 {
        self.model_per_level.recip()
    }

    /// Full-resolution input pixels per model-scale pixel.
    pub fn input_per_model(&self) -> f64 {
        self.downsample * self.level_per_model()
    }

    /// Model-scale pixels per full-resolution input pixel (a report's `factor`).
    pub fn factor(&self) -> f64 {
        self.input_per_model().recip()
    }

    /// A length (or coordinate) in model-scale pixels, in the input's pixels.
    pub fn to_input(&self, model: f64) -> f64 {
        model * self.input_per_model()
    }

    /// A length (or coordinate) in the input's pixels, in model-scale pixels.
    pub fn to_model(&self, input: f64) -> f64 {
        input / self.input_per_model()
    }

    /// The side, in model-scale pixels, of `side` pixels of the level read.
    pub fn model_side(&self, side: u32) -> usize {
        (f64::from(side) * self.model_per_level).round() as usize
    }
}

/// `image` at the model's scale: resized by `factor` (model-scale pixels per image pixel) with a
/// triangle filter whose support widens with the reduction, so shrinking averages every source
/// pixel instead of aliasing. The image itself, uncopied, when no resampling is needed.
pub fn to_model_scale(image: &RgbImage, factor: f64) -> Cow<'_, RgbImage> {
    if factor == 1.0 {
        return Cow::Borrowed(image);
    }
    let scaled = |side: u32| ((f64::from(side) * factor).round() as u32).max(1);
    Cow::Owned(resize(
        image,
        scaled(image.width()),
        scaled(image.height()),
        Filter::Triangle,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_size_precedence_and_the_glimpse_assumption() {
        let found = FileResolution::Found(0.5);
        let user = PixelSize::resolve(Some(0.25), found, 2000, 2000).unwrap();
        assert_eq!((user.mpp, user.source), (0.25, MppSource::User));
        let file = PixelSize::resolve(None, found, 2000, 2000).unwrap();
        assert_eq!((file.mpp, file.source), (0.5, MppSource::File));
        let glimpse = PixelSize::resolve(None, FileResolution::Unknown, 96, 96).unwrap();
        assert_eq!(glimpse.source, MppSource::AssumedGlimpse);
        assert_eq!(glimpse.factor(), 1.0, "PCam glimpses are used as they are");

        let err =
            PixelSize::resolve(None, FileResolution::Implausible(352.7), 1000, 1000).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("--mpp") && message.contains("352.7"),
            "{message}"
        );
        let side = GLIMPSE_MAX_SIDE;
        assert!(PixelSize::resolve(None, FileResolution::Unknown, side, side).is_ok());
        assert!(PixelSize::resolve(None, FileResolution::Unknown, side + 1, 96).is_err());
        assert!(PixelSize::resolve(Some(72.0), found, 96, 96).is_err());
    }

    #[test]
    fn the_scale_is_decided_at_the_level_read() {
        // 0.25 µm/px: level 0 is shrunk 3.9 times; level 2 (4x smaller, 1 µm/px) is read as it
        // is, so its model pixels are exactly 4 input pixels.
        let size = PixelSize {
            mpp: 0.25,
            source: MppSource::File,
        };
        let full = size.model_scale(0, 1.0);
        assert!((full.input_per_model() - MODEL_MPP / 0.25).abs() < 1e-12);
        let level = size.model_scale(2, 4.0);
        assert_eq!(level.model_per_level, 1.0);
        assert_eq!(level.input_per_model(), 4.0);
        assert_eq!(level.to_model(level.to_input(37.5)), 37.5);
        assert_eq!(level.model_side(1000), 1000);
        assert_eq!(ModelScale::NONE.factor(), 1.0);
    }

    #[test]
    fn shrinking_a_40x_image_averages_instead_of_aliasing() {
        // A one-pixel checkerboard at 0.243 µm/px: every 4x4 block averages to mid-grey, while
        // nearest-neighbour sampling would keep only black or only white.
        let image = RgbImage::from_fn(96, 96, |x, y| {
            image::Rgb([if (x + y) % 2 == 0 { 0 } else { 255 }; 3])
        });
        let size = PixelSize {
            mpp: MODEL_MPP / 4.0,
            source: MppSource::User,
        };
        assert!((size.factor() - 0.25).abs() < 1e-12);
        let small = to_model_scale(&image, size.factor());
        assert_eq!(small.dimensions(), (24, 24));
        for p in small.pixels().skip(25).take(500) {
            assert!((100..=155).contains(&p.0[0]), "{:?}", p.0);
        }
    }
}
