//! JPEG 2000 chunks of TIFF and Aperio SVS files, decoded by `hayro-jpeg2000` (pure Rust, the
//! same code natively and in the browser) into the samples [`super::colour::to_rgb`] turns into
//! RGB.
//!
//! Each chunk is one raw codestream. Aperio's 33003 and libvips' 33004 store Y, Cb and Cr, so
//! the container says the conversion to RGB (as OpenSlide and libvips do it); 33005 stores RGB,
//! usually through the codestream's own colour transform, which the decoder undoes, and 34712
//! is the generic code other writers use for RGB or greyscale.

use hayro_jpeg2000::{ColorSpace, DecodeSettings, DecoderContext, Image};
use tiff::ColorType;
use tiff::decoder::DecodingResult;

use crate::error::{CelnetError, Result};

/// Whether `compression` is one of the JPEG 2000 codes this module decodes.
pub fn is_jpeg2000(compression: u16) -> bool {
    matches!(compression, 33003 | 33004 | 33005 | 34712)
}

/// Whether TIFF chunks compressed with `compression` hold Y, Cb, Cr: Aperio's 33003, and 33004
/// as libvips writes it.
pub fn holds_ycbcr(compression: u16) -> bool {
    matches!(compression, 33003 | 33004)
}

/// A decoded chunk: its samples and their layout, `width` x `height` as the codestream
/// declares it (a TIFF tile's full size, also at the image's right and bottom edges).
pub struct Chunk {
    pub samples: DecodingResult,
    pub colour: ColorType,
    pub width: u32,
    pub height: u32,
}

/// Decodes one codestream; `ycbcr` says that its three components are Y, Cb, Cr for the
/// container to convert. A codestream that declares an image wider or taller than `largest`
/// (the container's chunk size) is refused before the decoder allocates for it.
pub fn decode(codestream: &[u8], ycbcr: bool, largest: (u32, u32)) -> Result<Chunk> {
    let fail = |e: &dyn std::fmt::Display| {
        CelnetError::ImageDecode(format!("a JPEG 2000 chunk cannot be decoded: {e}"))
    };
    // Strict: a damaged or cut codestream is an error, not a tile of whatever could be decoded
    // (the lenient mode is for the broken files PDFs carry).
    let settings = DecodeSettings {
        strict: true,
        ..DecodeSettings::default()
    };
    let image = Image::new(codestream, &settings).map_err(|e| fail(&e))?;
    let (width, height) = (image.width(), image.height());
    if width > largest.0 || height > largest.1 {
        return Err(fail(&format!(
            "it declares {width}x{height} px where the chunks are {}x{} px",
            largest.0, largest.1
        )));
    }
    let alpha = image.has_alpha();
    let colour = match (image.color_space(), alpha) {
        (ColorSpace::Gray, false) => ColorType::Gray(8),
        (ColorSpace::Gray, true) => ColorType::GrayA(8),
        (ColorSpace::RGB, true) => ColorType::RGBA(8),
        // The decoder converts subsampled Y, Cb, Cr itself (it reads them as sYCC); full-size
        // ones it returns as they are, for the container to convert.
        (ColorSpace::RGB, false) if ycbcr && !chroma_subsampled(codestream) => ColorType::YCbCr(8),
        (ColorSpace::RGB, false) => ColorType::RGB(8),
        (other, _) => {
            return Err(CelnetError::ImageDecode(format!(
                "a JPEG 2000 chunk is in the colour space {other:?}; RGB, YCbCr or greyscale \
                 are supported"
            )));
        }
    };
    let mut context = DecoderContext::default();
    let decoded = image.decode(&mut context).map_err(|e| fail(&e))?;
    let channels = decoded.components().len();
    let expected = u64::from(width) * u64::from(height);
    if decoded
        .components()
        .iter()
        .any(|c| c.samples().len() as u64 != expected)
    {
        return Err(fail(&"its components are not all of the image's size"));
    }
    let mut samples = vec![0; expected as usize * channels];
    decoded.store_u8_into(&mut samples);
    Ok(Chunk {
        samples: DecodingResult::U8(samples),
        colour,
        width,
        height,
    })
}

/// Whether a codestream holds three components, the last two subsampled alike and more than
/// the first: the decoder's own test for Y, Cb, Cr, read from the SIZ marker segment.
fn chroma_subsampled(codestream: &[u8]) -> bool {
    // SOC, SIZ's marker and length (2 bytes each), then Rsiz (2), eight 4-byte sizes and
    // offsets, and Csiz (2): 42 bytes before the components' (Ssiz, XRsiz, YRsiz).
    const COMPONENTS: usize = 42;
    let Some(count) = codestream.get(COMPONENTS - 2..COMPONENTS) else {
        return false;
    };
    if codestream.get(..4) != Some(&[0xFF, 0x4F, 0xFF, 0x51]) || count != [0, 3] {
        return false;
    }
    let Some(components) = codestream.get(COMPONENTS..COMPONENTS + 9) else {
        return false;
    };
    let step = |c: usize| (components[3 * c + 1], components[3 * c + 2]);
    let (y, cb, cr) = (step(0), step(1), step(2));
    cb == cr && cb != y && cb.0 >= y.0 && cb.1 >= y.1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SIZ header with three components subsampled `steps`.
    fn siz(steps: [(u8, u8); 3]) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 47, 0, 0];
        bytes.extend([0u8; 32]);
        bytes.extend([0, 3]);
        for (x, y) in steps {
            bytes.extend([7, x, y]);
        }
        bytes
    }

    #[test]
    fn subsampled_chroma_is_recognised_from_the_siz_segment() {
        assert!(chroma_subsampled(&siz([(1, 1), (2, 2), (2, 2)])));
        assert!(chroma_subsampled(&siz([(1, 1), (2, 1), (2, 1)])));
        assert!(!chroma_subsampled(&siz([(1, 1), (1, 1), (1, 1)])));
        assert!(!chroma_subsampled(&siz([(1, 1), (2, 2), (1, 1)])));
        assert!(!chroma_subsampled(&siz([(1, 1), (2, 2), (2, 2)])[..45]));
        assert!(!chroma_subsampled(b"not a codestream"));
    }

    #[test]
    fn damaged_codestreams_are_errors() {
        for bytes in [&b""[..], b"\xFF\x4F\xFF\x51", &siz([(1, 1); 3])] {
            let message = decode(bytes, false, (256, 256)).err().unwrap().to_string();
            assert!(message.contains("JPEG 2000"), "{message}");
        }
    }

    #[test]
    fn only_jpeg_2000_codes_are_claimed() {
        assert!([33003, 33004, 33005, 34712].into_iter().all(is_jpeg2000));
        assert!(![1, 5, 7, 8, 50000].into_iter().any(is_jpeg2000));
    }
}
