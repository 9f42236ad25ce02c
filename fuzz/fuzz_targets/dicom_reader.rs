//! Any bytes through the DICOM whole-slide reader: the header, the offset tables or the
//! fragments, and a read of the top-left of every level. Errors are fine; panics, hangs and
//! runaway memory are not.
#![no_main]

use std::io::Cursor;

use celnet::slide::OpenedImage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.get(128..132) != Some(&b"DICM"[..]) {
        return;
    }
    let Ok(slide) = OpenedImage::open(Cursor::new(data)) else {
        return;
    };
    for (level, info) in slide.levels().iter().enumerate() {
        let rect = (0.0, 0.0, f64::from(info.width.min(512)), f64::from(info.height.min(512)));
        let _ = slide.read_span(level, rect);
    }
});
