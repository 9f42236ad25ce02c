//! The DICOM whole-slide reader on studies wsidicomizer wrote from the Aperio crop
//! (`scripts/make-dicom-fixtures.py`), and on damaged copies of them.

use std::io::Cursor;

use celnet::slide::{FileResolution, OpenedImage};
use image::RgbImage;

mod common;
use common::difference;

const DIR: &str = "tests/fixtures/dicom";

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap()
}

fn png(path: &str) -> RgbImage {
    image::open(path).unwrap().to_rgb8()
}

type Opened = OpenedImage<Cursor<Vec<u8>>>;

fn study(files: Vec<Vec<u8>>) -> celnet::Result<Opened> {
    OpenedImage::open_files(files.into_iter().map(Cursor::new).collect())
}

fn levels(flavour: &str) -> Vec<Vec<u8>> {
    vec![
        bytes(&format!("{flavour}/level-0.dcm")),
        bytes(&format!("{flavour}/level-1.dcm")),
    ]
}

fn whole(opened: &Opened, level: usize) -> RgbImage {
    let l = &opened.levels()[level];
    let rect = (0.0, 0.0, f64::from(l.width), f64::from(l.height));
    opened.read_span(level, rect).unwrap()
}

fn error(files: Vec<Vec<u8>>) -> String {
    match study(files) {
        Ok(_) => panic!("a damaged study was opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_jpeg_study_reads_the_tiles_it_was_made_of_in_any_file_order() {
    let source = png("tests/fixtures/tiff/svs-crop.png");
    let mut files = levels("jpeg");
    for _ in 0..2 {
        let slide = study(files.clone()).unwrap();
        assert!(slide.is_tiled());
        let sizes: Vec<(u32, u32, f64)> = slide
            .levels()
            .iter()
            .map(|l| (l.width, l.height, l.downsample))
            .collect();
        assert_eq!(sizes, vec![(480, 480, 1.0), (240, 240, 2.0)]);
        assert_eq!(slide.resolution(), FileResolution::Found(0.499));
        assert_eq!(slide.format(), "DICOM WSI, JPEG (1.2.840.10008.1.2.4.50)");
        // The Aperio tiles themselves: libjpeg-turbo's decoding of them within 8.
        let (mean, max) = difference(&whole(&slide, 0), &source);
        assert!(mean < 1.0 && max <= 8, "mean {mean}, max {max}");
        // Across the four tiles' corner.
        let part = slide.read_span(0, (200.0, 220.0, 260.0, 270.0)).unwrap();
        let expected = image::imageops::crop_imm(&whole(&slide, 0), 200, 220, 60, 50).to_image();
        assert_eq!(part, expected);
        // Level 1 is the crop at half size, resampled and JPEG-encoded by wsidicomizer (its
        // JPEG is YCbCr though the data set says RGB; read as RGB it would be 50 off).
        let half = image::imageops::resize(&source, 240, 240, image::imageops::Triangle);
        let (mean, _) = difference(&whole(&slide, 1), &half);
        assert!(mean < 10.0, "level 1: mean {mean}");
        files.reverse();
    }
    // Without an offset table the fragments are walked: the same pixels.
    let walked = study(levels("jpeg-no-table")).unwrap();
    let table = study(levels("jpeg")).unwrap();
    assert_eq!(whole(&walked, 0), whole(&table, 0));
    // One file alone is a one-level slide.
    let one = OpenedImage::open(Cursor::new(bytes("jpeg/level-0.dcm"))).unwrap();
    assert_eq!(one.levels().len(), 1);
    assert_eq!(one.resolution(), FileResolution::Found(0.499));
    // TILED_SPARSE: frames in another order, placed by their positions; a tile without a
    // frame is glass.
    let sparse = OpenedImage::open(Cursor::new(bytes("jpeg-sparse/level-0.dcm"))).unwrap();
    let mut expected = whole(&table, 0);
    for (x, y) in (240..480).flat_map(|x| (0..240).map(move |y| (x, y))) {
        expected.put_pixel(x, y, image::Rgb([255, 255, 255]));
    }
    assert_eq!(whole(&sparse, 0), expected);
    // A view of the whole slide at level 1's size comes from level 1.
    let view = table.view((0.0, 0.0, 480.0, 480.0), 240, 240).unwrap();
    assert_eq!(view, whole(&table, 1));
}

#[test]
fn a_jpeg_2000_study_reads_as_openjpeg_decodes_it() {
    let slide = study(levels("jpeg2000")).unwrap();
    assert_eq!(
        slide.format(),
        "DICOM WSI, JPEG 2000 (1.2.840.10008.1.2.4.91)"
    );
    let read = whole(&slide, 0);
    let (mean, max) = difference(&read, &png(&format!("{DIR}/jpeg2000/level-0.png")));
    assert!(
        mean < 0.05 && max <= 1,
        "vs OpenJPEG: mean {mean}, max {max}"
    );
    let (mean, _) = difference(&read, &png("tests/fixtures/tiff/svs-crop.png"));
    assert!(mean < 3.0, "vs source: mean {mean}");
}

/// The offset of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the pattern is in the file")
}

#[test]
fn damaged_and_unsupported_studies_are_clear_errors() {
    let good = bytes("jpeg/level-0.dcm");

    // A transfer syntax it does not decode, named.
    let mut jpeg_ls = good.clone();
    let at = find(&jpeg_ls, b"1.2.840.10008.1.2.4.50");
    jpeg_ls[at..at + 22].copy_from_slice(b"1.2.840.10008.1.2.4.80");
    let message = error(vec![jpeg_ls]);
    assert!(
        message.contains("JPEG-LS (1.2.840.10008.1.2.4.80)"),
        "{message}"
    );

    // The file cut inside its last frame: it opens, and reading that frame is an error.
    let cut = study(vec![good[..good.len() - 5000].to_vec()]).unwrap();
    let message = cut
        .read_span(0, (0.0, 0.0, 480.0, 480.0))
        .unwrap_err()
        .to_string();
    assert!(message.contains("frame 3 is cut short"), "{message}");

    // An offset table entry past the end of the file.
    let mut past = good.clone();
    // Pixel Data (7FE0,0010) OB, undefined length, then the offset table item.
    let table = find(&past, &[0xE0, 0x7F, 0x10, 0x00, b'O', b'B']) + 12;
    assert_eq!(past[table..table + 4], [0xFE, 0xFF, 0x00, 0xE0]);
    past[table + 12..table + 16].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    let message = error(vec![past]);
    assert!(message.contains("offset points past the end"), "{message}");

    // More frames declared than the offset table has (the fixture's 4 as "99").
    let mut frames = good.clone();
    let at = find(&frames, &[0x28, 0x00, 0x08, 0x00, b'I', b'S', 2, 0]) + 8;
    frames[at..at + 2].copy_from_slice(b"99");
    let message = error(vec![frames]);
    assert!(message.contains("4 entries for 99 frames"), "{message}");

    // A frame that is not a JPEG.
    let mut garbled = good.clone();
    let first = table + 8 + 16 + 8;
    assert_eq!(garbled[first..first + 2], [0xFF, 0xD8]);
    garbled[first..first + 2].fill(0);
    let message = error(vec![garbled]);
    assert!(message.contains("frame 0"), "{message}");

    // Files of two slides, and a file that is not DICOM among them.
    let message = error(vec![good.clone(), bytes("jpeg2000/level-1.dcm")]);
    assert!(message.contains("more than one series"), "{message}");
    let png = std::fs::read("tests/fixtures/tiff/region.png").unwrap();
    let message = error(vec![good.clone(), png]);
    assert!(
        message.contains("file 2 of 2") && message.contains("not a DICOM file"),
        "{message}"
    );
}
