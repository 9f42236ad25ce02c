//! Bad and unusual inputs give typed errors or sensible results, never panics or NaN.

use std::io::Cursor;

use burn::module::Module;
use burn::prelude::*;
use celnet::explain::{CelmParams, Explainer, MapKind};
use celnet::input::decode_image;
use celnet::{CelnetConfig, CelnetError, weights};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

const SAMPLE: &str = "tests/fixtures/pcam-valid-200/1/patch0029612.jpg";

fn sample_bytes() -> Vec<u8> {
    std::fs::read(SAMPLE).expect("fixture present")
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

fn default_explainer() -> Explainer {
    let device = Device::flex();
    Explainer::new(weights::load_default(&device).unwrap(), &device)
}

#[test]
fn non_image_bytes_are_a_decode_error() {
    let err = decode_image(b"this is a text file renamed to .png").unwrap_err();
    assert!(matches!(err, CelnetError::ImageDecode(_)), "{err}");
    let err = decode_image(&[]).unwrap_err();
    assert!(matches!(err, CelnetError::ImageDecode(_)), "{err}");
}

#[test]
fn truncated_jpeg_is_a_decode_error() {
    let bytes = sample_bytes();
    let err = decode_image(&bytes[..bytes.len() / 3]).unwrap_err();
    assert!(matches!(err, CelnetError::ImageDecode(_)), "{err}");
}

#[test]
fn tiny_image_is_refused() {
    let png = encode(
        DynamicImage::ImageRgb8(RgbImage::new(1, 1)),
        ImageFormat::Png,
    );
    let err = decode_image(&png).unwrap_err();
    assert!(
        matches!(
            err,
            CelnetError::ImageTooSmall {
                width: 1,
                height: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// A small PNG file whose header claims `side x side` RGB pixels (a few bytes of IDAT data,
/// then IEND): what a decompression bomb or a damaged header looks like.
fn png_header_claiming(side: u32) -> Vec<u8> {
    fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    }
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    // A valid zlib stream of a few zero bytes: far fewer than the header promises.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn huge_png_header_is_refused_before_allocating() {
    let err = decode_image(&png_header_claiming(30_000)).unwrap_err();
    assert!(
        matches!(
            err,
            CelnetError::ImageTooLarge {
                width: 30_000,
                height: 30_000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn greyscale_rgba_and_16_bit_images_are_converted() {
    let rgb = decode_image(&sample_bytes()).unwrap();
    let variants: [DynamicImage; 4] = [
        DynamicImage::ImageRgb8(rgb.clone()).into_luma8().into(),
        DynamicImage::ImageRgb8(rgb.clone()).into_rgba8().into(),
        DynamicImage::ImageRgb8(rgb.clone()).into_rgb16().into(),
        DynamicImage::ImageRgb8(rgb.clone()).into_luma16().into(),
    ];
    for variant in variants {
        let kind = format!("{:?}", variant.color());
        for format in [ImageFormat::Png, ImageFormat::Tiff] {
            let decoded = decode_image(&encode(variant.clone(), format)).unwrap();
            assert_eq!(decoded.dimensions(), rgb.dimensions(), "{kind} {format:?}");
        }
    }
    // 16-bit samples are rescaled, not truncated: white stays white.
    let white16 = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
        40,
        40,
        image::Rgb([u16::MAX; 3]),
    ));
    let decoded = decode_image(&encode(white16, ImageFormat::Png)).unwrap();
    assert_eq!(decoded.get_pixel(5, 5).0, [255, 255, 255]);
}

#[test]
fn other_formats_decode() {
    let rgb = DynamicImage::ImageRgb8(decode_image(&sample_bytes()).unwrap());
    for format in [ImageFormat::Bmp, ImageFormat::WebP, ImageFormat::Png] {
        let decoded = decode_image(&encode(rgb.clone(), format)).unwrap();
        assert_eq!(decoded.dimensions(), (96, 96), "{format:?}");
    }
}

#[test]
fn wrong_shape_weights_name_the_mismatch() {
    let device = Device::flex();
    let wider = CelnetConfig::new().with_base_channels(8).init(&device);
    let bytes = weights::to_bytes(wider).unwrap();
    let err = weights::load_bytes(&bytes, &device).unwrap_err();
    assert!(matches!(err, CelnetError::WeightsMismatch(_)), "{err}");
    assert!(
        err.to_string().contains("head"),
        "message names no tensor: {err}"
    );
}

#[test]
fn corrupt_weights_are_a_format_error() {
    let device = Device::flex();
    for bytes in [
        b"not a weights file".to_vec(),
        weights::DEFAULT_WEIGHTS[..weights::DEFAULT_WEIGHTS.len() / 2].to_vec(),
    ] {
        let err = weights::load_bytes(&bytes, &device).unwrap_err();
        assert!(
            matches!(
                err,
                CelnetError::WeightsFormat(_) | CelnetError::WeightsMismatch(_)
            ),
            "{err}"
        );
    }
}

#[test]
fn weights_round_trip_exactly() {
    let device = Device::flex();
    let model = weights::load_default(&device).unwrap();
    let again = weights::load_bytes(&weights::to_bytes(model.clone()).unwrap(), &device).unwrap();
    let x = Tensor::<4>::random([2, 3, 64, 64], burn::tensor::Distribution::Default, &device);
    let a = model.valid().forward(x.clone()).into_data();
    let b = again.valid().forward(x).into_data();
    assert_eq!(a, b);
}

#[test]
fn degenerate_images_give_finite_maps() {
    let explainer = default_explainer();
    for (name, value) in [("black", 0u8), ("white", 255), ("grey", 128)] {
        let image = RgbImage::from_pixel(96, 96, Rgb([value; 3]));
        let explanation = pollster::block_on(explainer.explain(&image, &CelmParams::default()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(explanation.prediction.logit.is_finite(), "{name}");
        for (kind, map) in explanation.maps() {
            let map_name = kind.name();
            assert_eq!((map.width, map.height), (96, 96));
            assert!(
                map.data
                    .iter()
                    .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                "{name} {map_name} has values outside [0, 1] or NaN"
            );
        }
    }
}

#[test]
fn explanation_maps_are_at_input_resolution_for_odd_sizes() {
    let explainer = default_explainer();
    let image = RgbImage::from_fn(45, 70, |x, y| Rgb([(x * 5) as u8, (y * 3) as u8, 128]));
    let e = pollster::block_on(explainer.explain(&image, &CelmParams::default())).unwrap();
    for map in MapKind::ALL.map(|kind| e.map(kind)) {
        assert_eq!((map.width, map.height), (45, 70));
    }
    assert_eq!((e.mask.width, e.mask.height), (45, 70));
}

#[test]
fn parameters_out_of_range_are_refused() {
    let params = CelmParams {
        alpha: 1.5,
        ..CelmParams::default()
    };
    assert!(matches!(
        params.validate(),
        Err(CelnetError::InvalidParameter(_))
    ));
}
