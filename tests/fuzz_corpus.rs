//! Replays the fuzzers' corpora (`fuzz/corpus/`, kept minimised in the repository) through the
//! same calls the fuzz targets make: a smoke test of the readers on thousands of malformed
//! files, and a regression test for every input the fuzzers once crashed on.

use std::io::Cursor;
use std::path::Path;

use celnet::input::decode_image;
use celnet::slide::file::resolution::file_resolution;
use celnet::slide::{OpenedImage, TiffSlide};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn slide_reader_survives_its_corpus() {
    let inputs = corpus("slide_reader");
    assert!(inputs.len() >= 10, "{} inputs", inputs.len());
    let mut opened = 0;
    for data in inputs {
        let Ok(mut slide) = TiffSlide::open(Cursor::new(data)) else {
            continue;
        };
        opened += 1;
        for level in 0..slide.levels().len() {
            let info = slide.levels()[level].clone();
            let _ = slide.read_region(level, 0, 0, info.width.min(512), info.height.min(512));
        }
    }
    assert!(opened > 0);
}

#[test]
fn dicom_reader_survives_its_corpus() {
    let inputs = corpus("dicom_reader");
    assert!(inputs.len() >= 6, "{} inputs", inputs.len());
    let mut opened = 0;
    for data in inputs {
        let Ok(slide) = OpenedImage::open(Cursor::new(data)) else {
            continue;
        };
        opened += 1;
        for (level, info) in slide.levels().iter().enumerate() {
            let rect = (
                0.0,
                0.0,
                f64::from(info.width.min(512)),
                f64::from(info.height.min(512)),
            );
            let _ = slide.read_span(level, rect);
        }
    }
    assert!(opened > 0);
}

#[test]
fn image_decoder_survives_its_corpus() {
    let inputs = corpus("image_decode");
    assert!(inputs.len() >= 4, "{} inputs", inputs.len());
    for data in inputs {
        let _ = file_resolution(&data);
        let _ = decode_image(&data);
    }
}
