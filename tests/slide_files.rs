//! The slide reader on TIFF flavours made from one region of a real slide
//! (`scripts/make-tiff-fixtures.py`), and on damaged headers.

use std::io::Cursor;

use celnet::CelnetError;
use celnet::slide::FileResolution;
use celnet::slide::{OpenedImage, TiffSlide};
use image::RgbImage;

mod common;
use common::difference;

const DIR: &str = "tests/fixtures/tiff";

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap()
}

fn png(name: &str) -> RgbImage {
    image::open(format!("{DIR}/{name}")).unwrap().to_rgb8()
}

fn open(data: Vec<u8>) -> celnet::Result<TiffSlide<Cursor<Vec<u8>>>> {
    TiffSlide::open(Cursor::new(data))
}

fn whole(slide: &mut TiffSlide<Cursor<Vec<u8>>>, level: usize) -> RgbImage {
    let l = slide.levels()[level].clone();
    slide.read_region(level, 0, 0, l.width, l.height).unwrap()
}

#[test]
fn lossless_flavours_read_the_pixels_they_were_written_with() {
    let region = png("region.png");
    for name in [
        "tiled-lzw.tif",
        "pyramid-deflate.tif",
        "striped.tif",
        "ome-lzw.ome.tif",
    ] {
        let mut slide = open(bytes(name)).unwrap();
        assert_eq!(slide.dimensions(), (288, 192), "{name}");
        assert_eq!(whole(&mut slide, 0), region, "{name}");
        // The pixel size, in px/cm or px/inch, or in nm in the OME-XML (over 72 dpi tags).
        let FileResolution::Found(mpp) = slide.resolution() else {
            panic!("{name}: {:?}", slide.resolution());
        };
        assert!((mpp - 0.499).abs() < 1e-3, "{name}: {mpp}");
    }
    let mut tiled = open(bytes("tiled-lzw.tif")).unwrap();
    assert!(tiled.levels()[0].tiled);
    assert_eq!(tiled.levels()[0].chunk_width, 112);
    // A region across partial edge tiles.
    let part = tiled.read_region(0, 100, 90, 188, 102).unwrap();
    let expected = image::imageops::crop_imm(&region, 100, 90, 188, 102).to_image();
    assert_eq!(part, expected);
}

#[test]
fn pyramid_levels_are_found_and_chosen_by_pixel_size() {
    let region = png("region.png");
    let mut slide = open(bytes("pyramid-deflate.tif")).unwrap();
    let sizes: Vec<(u32, u32, f64)> = slide
        .levels()
        .iter()
        .map(|l| (l.width, l.height, l.downsample))
        .collect();
    assert_eq!(sizes, vec![(288, 192, 1.0), (144, 96, 2.0), (72, 48, 4.0)]);
    // Level 1 is the 2x2 mean of level 0.
    let half = whole(&mut slide, 1);
    let mean = RgbImage::from_fn(144, 96, |x, y| {
        let mut sum = [0u32; 3];
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let p = region.get_pixel(2 * x + dx, 2 * y + dy);
            (0..3).for_each(|c| sum[c] += u32::from(p[c]));
        }
        image::Rgb(sum.map(|s| ((f64::from(s) / 4.0).round()) as u8))
    });
    assert!(difference(&half, &mean).1 <= 1);

    // The same pyramid as OME-TIFF, its reduced levels in level 0's SubIFDs.
    let mut ome = open(bytes("ome-pyramid.ome.tif")).unwrap();
    let levels: Vec<(u32, u32, f64, usize)> = ome
        .levels()
        .iter()
        .map(|l| (l.width, l.height, l.downsample, l.chain))
        .collect();
    assert_eq!(
        levels,
        vec![(288, 192, 1.0, 0), (144, 96, 2.0, 1), (72, 48, 4.0, 2)]
    );
    assert_eq!(ome.resolution(), FileResolution::Found(0.499));
    assert_eq!(whole(&mut ome, 0), region);
    assert!(difference(&whole(&mut ome, 1), &mean).1 <= 1);
    assert!(difference(&whole(&mut ome, 2), &whole(&mut slide, 2)).1 <= 1);
    // Back and forth between the chains.
    assert_eq!(whole(&mut ome, 0), region);
    // 0.499 µm/px at level 0: level 1 is 0.998 µm/px, the model's scale (0.972) within 5%.
    assert_eq!(slide.level_for(0.499, 0.972), 1);
    assert_eq!(slide.level_for(0.499, 0.5), 0);
    assert_eq!(slide.level_for(0.499, 8.0), 2);
}

#[test]
fn jpeg_flavours_read_within_jpeg_error() {
    let region = png("region.png");
    // Quality 95 with 2x2 chroma subsampling: libjpeg's own decoding of this file differs from
    // the region by 6.7 on average (70 at most); an unconverted YCbCr read by about 55.
    let mut slide = open(bytes("bigtiff-jpeg-ycbcr.tif")).unwrap();
    let (mean, max) = difference(&whole(&mut slide, 0), &region);
    assert!(
        mean < 8.0 && max < 100,
        "YCbCr JPEG: mean {mean}, max {max}"
    );

    let mut grey = open(bytes("gray16.tif")).unwrap();
    let luma = RgbImage::from_fn(288, 192, |x, y| {
        let [r, g, b] = region.get_pixel(x, y).0.map(f64::from);
        let v = (0.299 * r + 0.587 * g + 0.114 * b).round() as u8;
        image::Rgb([v, v, v])
    });
    assert!(difference(&whole(&mut grey, 0), &luma).1 <= 1);
}

#[test]
fn svs_tiles_with_shared_tables_read_like_libjpeg() {
    let mut slide = open(bytes("svs-crop.svs")).unwrap();
    // The label image that follows level 0 is not a pyramid level.
    assert_eq!(slide.levels().len(), 1);
    assert_eq!(slide.resolution(), FileResolution::Found(0.499));
    assert!(slide.description().unwrap().contains("Aperio"));
    let reference = png("svs-crop.png");
    let (mean, max) = difference(&whole(&mut slide, 0), &reference);
    assert!(mean < 1.0 && max <= 8, "mean {mean}, max {max}");
    // Across the four tiles' corner.
    let part = slide.read_region(0, 200, 220, 60, 50).unwrap();
    let expected = image::imageops::crop_imm(&reference, 200, 220, 60, 50).to_image();
    assert!(difference(&part, &expected).1 <= 8);
}

#[test]
fn jpeg_2000_tiles_read_within_the_codec_error() {
    let region = png("region.png");
    // Aperio's 33003: lossless Y, Cb, Cr, converted here; only their rounding to 8 bits
    // (0.32 on average, 1 at most).
    let mut ycbcr = open(bytes("svs-jp2k-ycbcr.svs")).unwrap();
    assert_eq!(ycbcr.levels()[0].compression, 33003);
    assert_eq!(ycbcr.resolution(), FileResolution::Found(0.499));
    let (mean, max) = difference(&whole(&mut ycbcr, 0), &region);
    assert!(mean < 0.5 && max <= 2, "33003: mean {mean}, max {max}");
    // tifffile's 34712, lossless RGB.
    let mut lossless = open(bytes("jpeg2000.tif")).unwrap();
    assert_eq!(whole(&mut lossless, 0), region);
    // libvips' 33004 at Q 90, in YCbCr: 1.24 on average, 7 at most.
    let mut vips = open(bytes("vips-jp2k.tif")).unwrap();
    let (mean, max) = difference(&whole(&mut vips, 0), &region);
    assert!(mean < 1.5 && max <= 10, "33004: mean {mean}, max {max}");

    // Aperio's 33005, lossy through the irreversible colour transform: OpenJPEG's pixels to
    // within the rounding of two floating-point inverse transforms, and the source's within
    // the codec's error (3.4 on average at 35 dB).
    let mut rgb = open(bytes("svs-jp2k-rgb.svs")).unwrap();
    let reference = png("svs-jp2k-rgb.png");
    let read = whole(&mut rgb, 0);
    let (mean, max) = difference(&read, &reference);
    assert!(
        mean < 0.05 && max <= 1,
        "33005 vs OpenJPEG: mean {mean}, max {max}"
    );
    let (mean, _) = difference(&read, &png("svs-crop.png"));
    assert!(mean < 4.0, "33005 vs source: mean {mean}");
    // Across the four tiles' corner.
    let part = rgb.read_region(0, 200, 220, 60, 50).unwrap();
    let expected = image::imageops::crop_imm(&read, 200, 220, 60, 50).to_image();
    assert_eq!(part, expected);
}

/// Offset of the 12-byte IFD entry for `tag` in the first directory of a little-endian
/// classic TIFF.
fn entry(data: &[u8], tag: u16) -> usize {
    assert_eq!(&data[..4], b"II*\0");
    let ifd = u32::from_le_bytes(data[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes([data[ifd], data[ifd + 1]]) as usize;
    (0..count)
        .map(|i| ifd + 2 + 12 * i)
        .find(|&e| u16::from_le_bytes([data[e], data[e + 1]]) == tag)
        .unwrap_or_else(|| panic!("tag {tag} not found"))
}

/// Sets a SHORT or LONG tag's value in place.
fn patch(data: &mut [u8], tag: u16, value: u32) {
    let e = entry(data, tag);
    match u16::from_le_bytes([data[e + 2], data[e + 3]]) {
        3 => data[e + 8..e + 10].copy_from_slice(&(value as u16).to_le_bytes()),
        4 => data[e + 8..e + 12].copy_from_slice(&value.to_le_bytes()),
        other => panic!("tag {tag} has type {other}"),
    }
}

/// Opens and reads the whole of level 0: the error, whichever step gives it.
fn read_error(data: Vec<u8>) -> String {
    let result = open(data).and_then(|mut slide| {
        let (w, h) = slide.dimensions();
        slide.read_region(0, 0, 0, w.min(4096), h.min(4096))
    });
    match result {
        Ok(_) => panic!("a damaged file was read"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn damaged_and_unsupported_files_are_clear_errors() {
    let good = bytes("tiled-lzw.tif");

    let truncated = good[..good.len() / 2].to_vec();
    assert!(read_error(truncated).contains("TIFF"));

    let mut past_the_end = good.clone();
    past_the_end[4..8].copy_from_slice(&(u32::MAX - 7).to_le_bytes());
    assert!(read_error(past_the_end).contains("TIFF"));

    let mut no_tile = good.clone();
    patch(&mut no_tile, 322, 0); // TileWidth
    let message = read_error(no_tile);
    assert!(
        message.contains("TIFF") || message.contains("chunks"),
        "{message}"
    );

    let mut huge_tile = good.clone();
    patch(&mut huge_tile, 322, 1 << 16);
    patch(&mut huge_tile, 323, 1 << 16); // TileLength
    let message = read_error(huge_tile);
    assert!(
        message.contains("TIFF") || message.contains("chunks"),
        "{message}"
    );

    // A header claiming 100,000 x 100,000 px over the same few tile offsets.
    let mut huge = good.clone();
    patch(&mut huge, 256, 100_000);
    patch(&mut huge, 257, 100_000);
    let message = read_error(huge);
    assert!(message.contains("TIFF"), "{message}");

    // LZW tiles labelled JPEG 2000, and a compression no reader knows.
    let mut jpeg2000 = good.clone();
    patch(&mut jpeg2000, 259, 33003); // Compression
    let message = read_error(jpeg2000);
    assert!(message.contains("JPEG 2000 chunk"), "{message}");
    let mut lerc = good.clone();
    patch(&mut lerc, 259, 34887);
    let message = read_error(lerc);
    assert!(
        message.contains("unsupported compression code 34887"),
        "{message}"
    );

    let not_tiff = open(b"GIF89a not a slide".to_vec()).unwrap_err();
    assert!(matches!(not_tiff, CelnetError::ImageDecode(_)));
}

/// The first value of the array a LONG tag points to.
fn first_of_array(data: &[u8], tag: u16) -> usize {
    let e = entry(data, tag);
    u32::from_le_bytes(data[e + 8..e + 12].try_into().unwrap()) as usize
}

#[test]
fn damaged_jpeg_2000_tiles_are_clear_errors() {
    let good = bytes("svs-jp2k-ycbcr.svs");
    // The file cut inside its last tile.
    let last = good.len() - 100;
    let message = read_error(good[..last].to_vec());
    assert!(message.contains("the file ends"), "{message}");
    // A tile offset past the end of the file.
    let mut past_the_end = good.clone();
    let at = first_of_array(&good, 324); // TileOffsets
    past_the_end[at..at + 4].copy_from_slice(&(good.len() as u32 + 1000).to_le_bytes());
    let message = read_error(past_the_end);
    assert!(message.contains("chunk 0"), "{message}");
    // A byte count no tile has.
    let mut huge = good.clone();
    let at = first_of_array(&good, 325); // TileByteCounts
    huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let message = read_error(huge);
    assert!(message.contains("declares 4294967295 bytes"), "{message}");
    // A tile's codestream overwritten from its middle on.
    let mut garbled = good.clone();
    let at = u32::from_le_bytes(good[first_of_array(&good, 324)..][..4].try_into().unwrap());
    let count = u32::from_le_bytes(good[first_of_array(&good, 325)..][..4].try_into().unwrap());
    let (from, to) = ((at + 200) as usize, (at + count) as usize);
    garbled[from..to].fill(0xFF);
    let message = read_error(garbled);
    assert!(
        message.contains("a JPEG 2000 chunk cannot be decoded"),
        "{message}"
    );
}

#[test]
fn views_read_the_coarsest_level_with_the_detail_asked_for() {
    let mut slide = open(bytes("pyramid-deflate.tif")).unwrap();
    let levels: Vec<RgbImage> = (0..3).map(|l| whole(&mut slide, l)).collect();
    // The whole image at each level's size is that level, read as it is.
    for (level, expected) in levels.iter().enumerate() {
        let (w, h) = expected.dimensions();
        let view = slide.view((0.0, 0.0, 288.0, 192.0), w, h).unwrap();
        assert_eq!(&view, expected, "level {level}");
    }
    // A quarter of the image at level 1's scale comes from level 1.
    let view = slide.view((0.0, 0.0, 144.0, 96.0), 72, 48).unwrap();
    let expected = image::imageops::crop_imm(&levels[1], 0, 0, 72, 48).to_image();
    assert_eq!(view, expected);
}

#[test]
fn opened_files_are_slides_or_decoded_images_and_bad_compression_fails_at_once() {
    let opened = OpenedImage::open(Cursor::new(bytes("tiled-lzw.tif"))).unwrap();
    assert!(opened.is_tiled() && opened.image().is_none());
    assert_eq!(opened.dimensions(), (288, 192));
    assert!(!opened.is_glimpse());
    let opened = OpenedImage::open(Cursor::new(bytes("region.png"))).unwrap();
    assert!(!opened.is_tiled());
    assert_eq!(opened.image(), Some(&png("region.png")));
    assert_eq!(opened.resolution(), FileResolution::Unknown);
    assert_eq!(opened.levels().len(), 1);
    let mut svs = bytes("svs-crop.svs");
    patch(&mut svs, 259, 33003);
    let message = OpenedImage::open(Cursor::new(svs))
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("JPEG 2000"), "{message}");
}
