//! What an image file says about its pixel size: the `MPP =` field of an Aperio description,
//! the OME-XML of an OME-TIFF, TIFF XResolution with ResolutionUnit, or PNG pHYs, and whether
//! that can be a microscope's.

use std::io::{Cursor, Read, Seek};

use tiff::decoder::Decoder;
use tiff::decoder::ifd::Value;
use tiff::tags::Tag;

/// Pixel sizes a microscope scan can have, in µm/px. Screenshots and image editors write 72-300
/// dpi (85-350 µm/px) into their files: such values say nothing about the tissue.
pub const PLAUSIBLE_MPP: std::ops::RangeInclusive<f64> = 0.1..=10.0;

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

    /// The plausible pixel size, if the file gave one.
    pub fn found(self) -> Option<f64> {
        match self {
            FileResolution::Found(mpp) => Some(mpp),
            _ => None,
        }
    }

    /// The implausible pixel size the file declared, if it did.
    pub fn implausible(self) -> Option<f64> {
        match self {
            FileResolution::Implausible(mpp) => Some(mpp),
            _ => None,
        }
    }

    fn of(mpp: Option<f64>) -> Self {
        mpp.map_or(FileResolution::Unknown, FileResolution::from_mpp)
    }
}

/// Reads the pixel size an encoded image declares (PNG pHYs; for TIFF, what
/// [`tiff_resolution`] reads of its first directory). Other formats, and files that cannot be
/// parsed, are [`FileResolution::Unknown`]: decoding reports their damage.
pub fn file_resolution(bytes: &[u8]) -> FileResolution {
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png) => FileResolution::of(png_mpp(bytes)),
        Ok(image::ImageFormat::Tiff) => Decoder::new(Cursor::new(bytes))
            .map_or(FileResolution::Unknown, |mut d| tiff_resolution(&mut d)),
        _ => FileResolution::Unknown,
    }
}

/// The pixel size the decoder's current TIFF directory declares: an Aperio description's
/// `MPP =` field or an OME-TIFF's OME-XML first, then XResolution with ResolutionUnit.
pub fn tiff_resolution<R: Read + Seek>(decoder: &mut Decoder<R>) -> FileResolution {
    if let Ok(Some(Value::Ascii(description))) = decoder.find_tag(Tag::ImageDescription)
        && let Some(mpp) = aperio_mpp(&description).or_else(|| ome_mpp(&description))
    {
        return FileResolution::of(Some(mpp));
    }
    FileResolution::of(resolution_tags_mpp(decoder))
}

/// The pixel size of the first image an OME-XML document describes, in µm/px: its `Pixels`
/// element's `PhysicalSizeX` (and `PhysicalSizeY`, which must agree within 1%) in
/// `PhysicalSizeXUnit` (µm where absent, as OME's schema says). `None` for other text, a size
/// missing or not positive, or a unit that is not a length.
pub fn ome_mpp(description: &str) -> Option<f64> {
    if !description.contains("<OME") && !description.contains(":OME") {
        return None;
    }
    let document = roxmltree::Document::parse(description).ok()?;
    let pixels = document
        .descendants()
        .find(|node| node.tag_name().name() == "Pixels")?;
    let size = |axis: &str| -> Option<f64> {
        let value: f64 = pixels
            .attribute(format!("PhysicalSize{axis}").as_str())?
            .parse()
            .ok()?;
        let unit = pixels
            .attribute(format!("PhysicalSize{axis}Unit").as_str())
            .unwrap_or("\u{b5}m");
        let micrometres = match unit {
            // The micro sign, the Greek mu, and ASCII spellings.
            "\u{b5}m" | "\u{3bc}m" | "um" | "micron" => 1.0,
            "nm" => 1e-3,
            "\u{c5}" => 1e-4,
            "mm" => 1e3,
            "cm" => 1e4,
            "m" => 1e6,
            _ => return None,
        };
        (value.is_finite() && value > 0.0).then_some(value * micrometres)
    };
    let x = size("X")?;
    match size("Y") {
        Some(y) if (x - y).abs() > 0.01 * x => None,
        _ => Some(x),
    }
}

fn png_mpp(bytes: &[u8]) -> Option<f64> {
    let reader = png::Decoder::new(Cursor::new(bytes)).read_info().ok()?;
    let dims = reader.info().pixel_dims?;
    (dims.unit == png::Unit::Meter && dims.xppu > 0).then(|| 1e6 / f64::from(dims.xppu))
}

fn resolution_tags_mpp<R: Read + Seek>(decoder: &mut Decoder<R>) -> Option<f64> {
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

    /// An OME-XML document as OME-TIFF writers put it in the first ImageDescription, with the
    /// `Pixels` element's physical size attributes given.
    fn ome(attributes: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\" \
             UUID=\"urn:uuid:1\"><Image ID=\"Image:0\" Name=\"slide\">\
             <Pixels DimensionOrder=\"XYCZT\" ID=\"Pixels:0\" SizeC=\"3\" SizeT=\"1\" \
             SizeX=\"4\" SizeY=\"4\" SizeZ=\"1\" Type=\"uint8\" {attributes}>\
             <Channel ID=\"Channel:0:0\" SamplesPerPixel=\"3\"/>\
             <TiffData IFD=\"0\" PlaneCount=\"1\"/></Pixels></Image></OME>"
        )
    }

    #[test]
    fn ome_xml_pixel_size_is_read_in_its_units() {
        let size = |attributes: &str| ome_mpp(&ome(attributes));
        let micro = "PhysicalSizeX=\"0.25\" PhysicalSizeXUnit=\"\u{b5}m\" \
                     PhysicalSizeY=\"0.25\" PhysicalSizeYUnit=\"\u{b5}m\"";
        assert_eq!(size(micro), Some(0.25));
        assert_eq!(
            size("PhysicalSizeX=\"0.5\" PhysicalSizeY=\"0.5\""),
            Some(0.5)
        );
        let nm = "PhysicalSizeX=\"250\" PhysicalSizeXUnit=\"nm\" \
                  PhysicalSizeY=\"250\" PhysicalSizeYUnit=\"nm\"";
        assert!((size(nm).unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(
            size("PhysicalSizeX=\"0.0005\" PhysicalSizeXUnit=\"mm\""),
            Some(0.5)
        );
        // No length, a pixel as the unit, axes that disagree, a size that is not positive.
        assert_eq!(size(""), None);
        assert_eq!(
            size("PhysicalSizeX=\"1\" PhysicalSizeXUnit=\"pixel\""),
            None
        );
        assert_eq!(size("PhysicalSizeX=\"0.25\" PhysicalSizeY=\"0.5\""), None);
        assert_eq!(size("PhysicalSizeX=\"-1\""), None);
        // Other text and broken XML.
        assert_eq!(ome_mpp("ImageJ=1.54f"), None);
        assert_eq!(ome_mpp("<OME><Image><Pixels PhysicalSizeX=\"0.25\""), None);
        // In a TIFF the OME-XML wins over resolution tags an editor wrote (the unit left to its
        // default: the encoder writes ASCII only).
        let ascii = "PhysicalSizeX=\"0.25\" PhysicalSizeY=\"0.25\"";
        let ome_tiff = tiff_with(Some(tiff::tags::ResolutionUnit::Inch), 72, &ome(ascii));
        assert_eq!(file_resolution(&ome_tiff), FileResolution::Found(0.25));
    }
}
