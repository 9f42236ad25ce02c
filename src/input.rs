//! Image files: decoding with size limits checked before allocation, the conversion to the
//! normalised `[1, 3, H, W]` layout the network expects, and reading and writing files.

use std::io::Cursor;
use std::path::Path;

use burn::tensor::TensorData;
use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

use crate::error::{CelnetError, FileContext, Result};
use crate::network::model::MIN_INPUT;

/// Largest image the decoder accepts (a 8192x8192 region): bigger files are refused from their
/// header, before any pixel buffer is allocated.
pub const MAX_DECODE_PIXELS: u64 = 8192 * 8192;

/// Per-channel mean and standard deviation of the PCam training patches (RGB, on a 0..1 scale).
pub const CHANNEL_MEAN: [f32; 3] = [0.7008, 0.5384, 0.6916];
/// See [`CHANNEL_MEAN`].
pub const CHANNEL_STD: [f32; 3] = [0.2350, 0.2774, 0.2128];

/// File extensions (lower case) of the formats [`decode_image`] reads.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp"];

/// Whether `path` names a file of a format [`decode_image`] reads, by its extension.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads and decodes an image file; errors name the file.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| CelnetError::io(path, e))?;
    decode_image(&bytes).in_file(path)
}

/// Reads a mask or label image file as 8-bit grey (no size limit beyond the decoder's own: masks
/// are written by this crate); errors name the file.
pub fn read_gray_image(path: &Path) -> Result<image::GrayImage> {
    let bytes = std::fs::read(path).map_err(|e| CelnetError::io(path, e))?;
    let image = image::load_from_memory(&bytes)
        .map_err(|e| CelnetError::ImageDecode(e.to_string()))
        .in_file(path)?;
    Ok(image.to_luma8())
}

/// Writes an image in the format its extension names (PNG for the crate's outputs).
pub fn save_image<P, C>(image: &image::ImageBuffer<P, C>, path: &Path) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    image.save(path).map_err(|e| CelnetError::ImageWrite {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Decodes PNG, JPEG, TIFF, BMP or WebP bytes into 8-bit RGB.
///
/// Greyscale is replicated to three channels, alpha is dropped and 16-bit or float samples are
/// rescaled to 8 bits. Images smaller than [`MIN_INPUT`] on a side or larger than
/// [`MAX_DECODE_PIXELS`] are errors.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    let reader = || -> Result<ImageReader<Cursor<&[u8]>>> {
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| CelnetError::ImageDecode(e.to_string()))?;
        if reader.format().is_none() {
            return Err(CelnetError::ImageDecode(
                "not a PNG, JPEG, TIFF, BMP or WebP file".into(),
            ));
        }
        Ok(reader)
    };
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|e| CelnetError::ImageDecode(e.to_string()))?;
    check_size(
        width,
        height,
        MAX_DECODE_PIXELS,
        "largest image the decoder accepts",
    )?;

    if reader()?.format() == Some(ImageFormat::Jpeg) {
        return decode_jpeg_strict(bytes);
    }

    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // Room for a 16-bit RGBA decode of the checked size.
    limits.max_alloc = Some(u64::from(width) * u64::from(height) * 8 + (1 << 20));
    let mut reader = reader()?;
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| CelnetError::ImageDecode(e.to_string()))?;
    Ok(into_rgb8(image))
}

/// Checks an image size against the network's minimum and a pixel budget.
pub fn check_size(width: u32, height: u32, max_pixels: u64, what: &'static str) -> Result<()> {
    let min = MIN_INPUT as u32;
    if width < min || height < min {
        return Err(CelnetError::ImageTooSmall { width, height, min });
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(CelnetError::ImageTooLarge {
            width,
            height,
            max_pixels,
            what,
        });
    }
    Ok(())
}

/// JPEG in strict mode: a truncated or corrupt stream is an error, not a grey-filled picture
/// (the lenient decoding browsers do would show a clinician an image that is not there).
fn decode_jpeg_strict(bytes: &[u8]) -> Result<RgbImage> {
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder
        .decode()
        .map_err(|e| CelnetError::ImageDecode(format!("damaged JPEG: {e}")))?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| CelnetError::ImageDecode("JPEG without a frame header".into()))?;
    RgbImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| CelnetError::ImageDecode("JPEG pixel data has the wrong size".into()))
}

fn into_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

/// Normalised channel-first floats of an RGB image, `3 * H * W` values.
pub fn normalise(image: &RgbImage) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(pixel.0[c]) / 255.0 - CHANNEL_MEAN[c]) / CHANNEL_STD[c];
        }
    }
    out
}

/// The image as a `[1, 3, H, W]` tensor payload.
pub fn to_tensor_data(image: &RgbImage) -> TensorData {
    let shape = [1, 3, image.height() as usize, image.width() as usize];
    TensorData::new(normalise(image), shape)
}

/// Several images of one size as one normalised batch `[N, 3, H, W]`; an empty list, or images
/// of different sizes, is an error.
pub fn batch_tensor_data(images: &[RgbImage]) -> Result<TensorData> {
    let Some(first) = images.first() else {
        return Err(CelnetError::InvalidParameter(
            "a batch needs at least one image".into(),
        ));
    };
    let (width, height) = first.dimensions();
    let mut values = Vec::with_capacity(images.len() * 3 * (width * height) as usize);
    for image in images {
        if image.dimensions() != (width, height) {
            return Err(CelnetError::InvalidParameter(format!(
                "a batch's images must share one size: {width}x{height} and {}x{}",
                image.width(),
                image.height()
            )));
        }
        values.extend(normalise(image));
    }
    let shape = [images.len(), 3, height as usize, width as usize];
    Ok(TensorData::new(values, shape))
}
