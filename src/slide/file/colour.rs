//! Chunk samples as 8-bit RGB: greyscale, RGBA over white glass, 16-bit samples and the YCbCr
//! of TIFF's JPEG tiles.

use tiff::ColorType;
use tiff::decoder::DecodingResult;

use crate::error::{CelnetError, Result};

/// A decoded chunk of `width` x `height` pixels as interleaved 8-bit RGB. YCbCr (JPEG tiles
/// with PhotometricInterpretation 6: the `tiff` crate returns their samples unconverted) is
/// converted here.
pub fn to_rgb(data: DecodingResult, colour: ColorType, width: u32, height: u32) -> Result<Vec<u8>> {
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
    // One loop per layout, with nothing but arithmetic inside, so that each vectorises.
    let samples = &samples[..pixels * per_pixel];
    let mut rgb = vec![0; pixels * 3];
    let out = rgb.as_chunks_mut::<3>().0;
    match colour {
        ColorType::Gray(_) => {
            for (o, &v) in out.iter_mut().zip(samples) {
                *o = [v; 3];
            }
        }
        ColorType::GrayA(_) => {
            for (o, p) in out.iter_mut().zip(samples.as_chunks::<2>().0) {
                *o = [over_white(p[0], p[1]); 3];
            }
        }
        ColorType::RGBA(_) => {
            for (o, p) in out.iter_mut().zip(samples.as_chunks::<4>().0) {
                *o = [0, 1, 2].map(|c| over_white(p[c], p[3]));
            }
        }
        ColorType::YCbCr(_) => {
            for (o, p) in out.iter_mut().zip(samples.as_chunks::<3>().0) {
                *o = ycbcr_to_rgb(p[0], p[1], p[2]);
            }
        }
        _ => rgb.copy_from_slice(samples),
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
    // Rounding half up by truncation: the same values as `round` here (checked for every
    // input by a test) without a call to the C library's `roundf` per sample.
    let clamp = |v: f32| (v.clamp(0.0, 255.0) + 0.5) as u8;
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
    fn ycbcr_rounds_as_round_does_for_every_input() {
        let reference = |y: u8, cb: u8, cr: u8| {
            let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
            let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
            [
                clamp(y + 1.402 * cr),
                clamp(y - 0.344_136 * cb - 0.714_136 * cr),
                clamp(y + 1.772 * cb),
            ]
        };
        for y in 0..=255 {
            for cb in 0..=255 {
                for cr in 0..=255 {
                    assert_eq!(
                        ycbcr_to_rgb(y, cb, cr),
                        reference(y, cb, cr),
                        "{y} {cb} {cr}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_layout_becomes_rgb() {
        let gray = to_rgb(DecodingResult::U8(vec![7, 9]), ColorType::Gray(8), 2, 1).unwrap();
        assert_eq!(gray, [7, 7, 7, 9, 9, 9]);
        let gray_alpha = DecodingResult::U16(vec![0x0a00, 0x0000, 0x0b00, 0xff00]);
        let gray_alpha = to_rgb(gray_alpha, ColorType::GrayA(16), 2, 1).unwrap();
        assert_eq!(gray_alpha, [255, 255, 255, 11, 11, 11]);
        let rgba = DecodingResult::U8(vec![1, 2, 3, 255, 4, 5, 6, 0]);
        let rgba = to_rgb(rgba, ColorType::RGBA(8), 2, 1).unwrap();
        assert_eq!(rgba, [1, 2, 3, 255, 255, 255]);
        let ycbcr = DecodingResult::U8(vec![128, 128, 128, 0, 128, 128]);
        let ycbcr = to_rgb(ycbcr, ColorType::YCbCr(8), 2, 1).unwrap();
        assert_eq!(ycbcr, [128, 128, 128, 0, 0, 0]);
        let rgb = to_rgb(DecodingResult::U8(vec![1, 2, 3]), ColorType::RGB(8), 1, 1).unwrap();
        assert_eq!(rgb, [1, 2, 3]);
        let short = to_rgb(DecodingResult::U8(vec![1, 2]), ColorType::RGB(8), 1, 1);
        assert!(short.is_err());
    }

    #[test]
    fn transparency_is_glass() {
        assert_eq!(over_white(10, 0), 255);
        assert_eq!(over_white(10, 255), 10);
    }
}
