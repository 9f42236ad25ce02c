//! Any bytes through the whole-image decoder and the pixel-size readers (PNG pHYs, TIFF tags,
//! Aperio descriptions).
#![no_main]

use celnet::input::decode_image;
use celnet::slide::file::resolution::file_resolution;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = file_resolution(data);
    let _ = decode_image(data);
});
