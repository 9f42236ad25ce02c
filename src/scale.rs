//! Pixel size: what an image file says about its micrometres per pixel, whether that can be a
//! microscope's, and resampling to the scale CELNet was trained at.
//!
//! CELNet saw PCam glimpses at about 1 µm/px (10x), so a score only means something at that
//! scale: a 40x field of view must be shrunk four times before it is scored.

use std::borrow::Cow;
use std::io::Cursor;

use image::RgbImage;
use image::imageops::FilterType;
use serde::Serialize;

use crate::error::{CelnetError, Result};
use crate::model::GLIMPSE;

/// Micrometres per pixel of the PCam patches the network was trained on (Camelyon16 level 2).
pub const MODEL_MPP: f64 = 0.972;

/// Pixel sizes a microscope scan can have, in µm/px. Screenshots and image editors write 72-300
/// dpi (85-350 µm/px) into their files: such values say nothing about the tissue.
pub const PLAUSIBLE_MPP: std::ops::RangeInclusive<f64> = 0.1..=10.0;

/// Scales within this relative distance of [`MODEL_MPP`] are used as they are (PCam's own
/// 0.972 and the usual "10x = 1 µm/px" differ by 3%).
pub const SCALE_TOLERANCE: f64 = 0.05;

/// The pixel size assumed for glimpses without metadata, at most 96x96 px.
pub const ASSUMED_GLIMPSE_MPP: f64 = 1.0;

/// What an image file's metadata says about its pixel size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FileResolution {
    /// A plausible microscope pixel size, µm/px.
    Found(f64),
    /// A value no microscope has (a screen's or an editor's dpi), µm/px.
    Implausible(f64),
    /// Nothing, or a resolution without a physical unit.
    Unknown,
}

impl FileResolution {
    /// Classifies a declared pixel size in µm/px.
    pub fn from_mpp(mpp: f64) -> Self {
        if !mpp.is_finite() || mpp <= 0.0 {
            FileResolution::Unknown
        } else if PLAUSIBLE_MPP.contains(&mpp) {
            FileResolution::Found(mpp)
        } else {
            FileResolution::Implausible(mpp)
        }
    }
}

/// Reads the pixel size an encoded image declares: the `MPP =` field of an Aperio SVS
/// description, TIFF XResolution with ResolutionUnit, or PNG pHYs. Other formats, and files
/// that cannot be parsed, are [`FileResolution::Unknown`]: decoding reports their damage.
pub fn file_resolution(bytes: &[u8]) -> FileResolution {
    let mpp = match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png) => png_mpp(bytes),
        Ok(image::ImageFormat::Tiff) => tiff_mpp(bytes),
        _ => None,
    };
    mpp.map_or(FileResolution::Unknown, FileResolution::from_mpp)
}

fn png_mpp(bytes: &[u8]) -> Option<f64> {
    let reader = png::Decoder::new(Cursor::new(bytes)).read_info().ok()?;
    let dims = reader.info().pixel_dims?;
    (dims.unit == png::Unit::Meter && dims.xppu > 0).then(|| 1e6 / f64::from(dims.xppu))
}

fn tiff_mpp(bytes: &[u8]) -> Option<f64> {
    use tiff::decoder::ifd::Value;
    use tiff::tags::Tag;
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(bytes)).ok()?;
    if let Ok(Some(Value::Ascii(description))) = decoder.find_tag(Tag::ImageDescription)
        && let Some(mpp) = aperio_mpp(&description)
    {
        return Some(mpp);
    }
    resolution_tags_mpp(&mut decoder)
}

/// What the current directory's XResolution and ResolutionUnit say, classified.
pub fn tiff_resolution<R: std::io::Read + std::io::Seek>(
    decoder: &mut tiff::decoder::Decoder<R>,
) -> FileResolution {
    resolution_tags_mpp(decoder).map_or(FileResolution::Unknown, FileResolution::from_mpp)
}

fn resolution_tags_mpp<R: std::io::Read + std::io::Seek>(
    decoder: &mut tiff::decoder::Decoder<R>,
) -> Option<f64> {
    use tiff::decoder::ifd::Value;
    use tiff::tags::Tag;
    let pixels_per_unit = match decoder.find_tag(Tag::XResolution).ok()?? {
        Value::Rational(n, d) if d != 0 => f64::from(n) / f64::from(d),
        Value::Double(v) => v,
        Value::Float(v) => f64::from(v),
        _ => return None,
    };
    // TIFF's default unit is the inch; 1 means "no absolute unit".
    let micrometres_per_unit = match decoder.find_tag_unsigned::<u16>(Tag::ResolutionUnit) {
        Ok(None | Some(2)) => 25_400.0,
        Ok(Some(3)) => 10_000.0,
        _ => return None,
    };
    (pixels_per_unit > 0.0).then(|| micrometres_per_unit / pixels_per_unit)
}

/// The `MPP = 0.4990` field of an Aperio ImageDescription (`|`-separated `key = value` pairs).
pub fn aperio_mpp(description: &str) -> Option<f64> {
    description.split('|').find_map(|field| {
        let (key, value) = field.split_once('=')?;
        (key.trim() == "MPP").then(|| value.trim().parse().ok())?
    })
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

/// The pixel size an image is scored at, and why.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PixelSize {
    /// Micrometres per pixel of the image as given.
    pub mpp: f64,
    pub source: MppSource,
}

impl PixelSize {
    /// Decides the pixel size of a `width` x `height` image: the user's value first, then the
    /// file's, then 1 µm/px for glimpses of at most 96x96 px; anything else is an error that
    /// says how to give it.
    pub fn resolve(
        user: Option<f64>,
        file: FileResolution,
        width: u32,
        height: u32,
    ) -> Result<PixelSize> {
        if let Some(mpp) = user {
            if !PLAUSIBLE_MPP.contains(&mpp) {
                return Err(CelnetError::InvalidParameter(format!(
                    "a pixel size of {mpp} µm/px is not a microscope's; give one between {} and {} (0.25 ≈ 40x, 0.5 ≈ 20x, 1.0 ≈ 10x)",
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
            _ if width as usize <= GLIMPSE && height as usize <= GLIMPSE => Ok(PixelSize {
                mpp: ASSUMED_GLIMPSE_MPP,
                source: MppSource::AssumedGlimpse,
            }),
            other => Err(CelnetError::UnknownPixelSize {
                width,
                height,
                declared: match other {
                    FileResolution::Implausible(mpp) => Some(mpp),
                    _ => None,
                },
            }),
        }
    }

    /// How much the image must be scaled to reach [`MODEL_MPP`]: output side = input side x
    /// factor (0.5 for a 0.486 µm/px scan). 1 within [`SCALE_TOLERANCE`].
    pub fn factor(&self) -> f64 {
        let factor = self.mpp / MODEL_MPP;
        if (factor - 1.0).abs() <= SCALE_TOLERANCE {
            1.0
        } else {
            factor
        }
    }
}

/// `image` at the model's scale: resized by `size.factor()` with a triangle filter whose support
/// widens with the reduction, so shrinking averages every source pixel instead of aliasing.
/// The image itself, uncopied, when no resampling is needed.
pub fn to_model_scale<'a>(image: &'a RgbImage, size: &PixelSize) -> Cow<'a, RgbImage> {
    let factor = size.factor();
    if factor == 1.0 {
        return Cow::Borrowed(image);
    }
    let scaled = |side: u32| ((f64::from(side) * factor).round() as u32).max(1);
    Cow::Owned(image::imageops::resize(
        image,
        scaled(image.width()),
        scaled(image.height()),
        FilterType::Triangle,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_with_pixels_per_metre(ppm: Option<(u32, png::Unit)>) -> Vec<u8> {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, 4, 4);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_pixel_dims(ppm.map(|(xppu, unit)| png::PixelDimensions {
                xppu,
                yppu: xppu,
                unit,
            }));
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&[128; 48]).unwrap();
        }
        bytes
    }

    fn tiff_with(
        unit: Option<tiff::tags::ResolutionUnit>,
        per_unit: u32,
        description: &str,
    ) -> Vec<u8> {
        use tiff::encoder::{Rational, TiffEncoder, colortype};
        let mut bytes = Cursor::new(Vec::new());
        {
            let mut encoder = TiffEncoder::new(&mut bytes).unwrap();
            let mut image = encoder.new_image::<colortype::RGB8>(4, 4).unwrap();
            image.x_resolution(Rational { n: per_unit, d: 1 });
            image.y_resolution(Rational { n: per_unit, d: 1 });
            if let Some(unit) = unit {
                image.resolution_unit(unit);
            }
            if !description.is_empty() {
                image
                    .encoder()
                    .write_tag(tiff::tags::Tag::ImageDescription, description)
                    .unwrap();
            }
            image.write_data(&[128u8; 48]).unwrap();
        }
        bytes.into_inner()
    }

    #[test]
    fn png_phys_in_metres_is_read_and_screen_dpi_is_implausible() {
        // 2,000,000 px/m = 0.5 µm/px (a 20x scan).
        let scan = png_with_pixels_per_metre(Some((2_000_000, png::Unit::Meter)));
        assert_eq!(file_resolution(&scan), FileResolution::Found(0.5));
        // 72 dpi = 2835 px/m = 352.7 µm/px: a screenshot.
        let screenshot = png_with_pixels_per_metre(Some((2835, png::Unit::Meter)));
        assert!(
            matches!(file_resolution(&screenshot), FileResolution::Implausible(m) if (m - 352.7).abs() < 0.1)
        );
        let aspect_only = png_with_pixels_per_metre(Some((1, png::Unit::Unspecified)));
        assert_eq!(file_resolution(&aspect_only), FileResolution::Unknown);
        assert_eq!(
            file_resolution(&png_with_pixels_per_metre(None)),
            FileResolution::Unknown
        );
    }

    #[test]
    fn tiff_resolution_follows_its_unit() {
        use tiff::tags::ResolutionUnit;
        // 40,000 px/cm = 0.25 µm/px.
        let cm = tiff_with(Some(ResolutionUnit::Centimeter), 40_000, "");
        assert_eq!(file_resolution(&cm), FileResolution::Found(0.25));
        // 25,400 px/inch = 1 µm/px.
        let inch = tiff_with(Some(ResolutionUnit::Inch), 25_400, "");
        assert_eq!(file_resolution(&inch), FileResolution::Found(1.0));
        let none = tiff_with(Some(ResolutionUnit::None), 300, "");
        assert_eq!(file_resolution(&none), FileResolution::Unknown);
        // 300 dpi from an image editor.
        let editor = tiff_with(Some(ResolutionUnit::Inch), 300, "");
        assert!(matches!(
            file_resolution(&editor),
            FileResolution::Implausible(_)
        ));
    }

    #[test]
    fn aperio_description_wins_over_resolution_tags() {
        let description = "Aperio Image Library v10.0.51\r\n46920x33014 [0,100 46000x32914] (256x256) JPEG/RGB Q=30|AppMag = 20|MPP = 0.4990|Left = 25.69";
        assert_eq!(aperio_mpp(description), Some(0.499));
        assert_eq!(aperio_mpp("Aperio Image Library|AppMag = 20"), None);
        let svs_like = tiff_with(Some(tiff::tags::ResolutionUnit::Inch), 72, description);
        assert_eq!(file_resolution(&svs_like), FileResolution::Found(0.499));
    }

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
        assert!(PixelSize::resolve(None, FileResolution::Unknown, 97, 96).is_err());
        assert!(PixelSize::resolve(Some(72.0), found, 96, 96).is_err());
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
        let small = to_model_scale(&image, &size);
        assert_eq!(small.dimensions(), (24, 24));
        for p in small.pixels().skip(25).take(500) {
            assert!((100..=155).contains(&p.0[0]), "{:?}", p.0);
        }
    }
}
