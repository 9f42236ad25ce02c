//! Any bytes through the slide reader: opening, every level's description, and a read of the
//! top-left of every level. Errors are fine; panics, hangs and runaway memory are not.
#![no_main]

use std::io::Cursor;

use celnet::slide::TiffSlide;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut slide) = TiffSlide::open(Cursor::new(data)) else {
        return;
    };
    let _ = slide.resolution();
    for level in 0..slide.levels().len() {
        let info = slide.levels()[level].clone();
        let _ = slide.read_region(level, 0, 0, info.width.min(512), info.height.min(512));
    }
});
