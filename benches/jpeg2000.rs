//! JPEG 2000 tile decoding on one thread, as the slide reader decodes each tile.
//!
//! `cargo bench --bench jpeg2000 -- DIR [ROUNDS] [COMPRESSION]` decodes every `.j2k` codestream
//! in `DIR` once to warm up, then `ROUNDS` times (default 5), and prints each round's and the
//! median tiles/s. `COMPRESSION` is the TIFF code the tiles came with (default 33005; 33003
//! adds the YCbCr conversion). `benches/openjpeg_tiles.py` makes such tiles and times OpenJPEG
//! on them, for a same-run ratio (docs/speed.md).

use std::time::Instant;

use celnet::slide::file::colour::to_rgb;
use celnet::slide::file::jpeg2000;

fn main() {
    // `cargo bench` passes `--bench` to every bench binary; only the other arguments count.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: cargo bench --bench jpeg2000 -- DIR [ROUNDS] [COMPRESSION]");
        return;
    };
    let rounds: usize = args.get(1).map_or(5, |r| r.parse().expect("ROUNDS"));
    let compression: u16 = args
        .get(2)
        .map_or(33005, |c| c.parse().expect("COMPRESSION"));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("DIR")
        .map(|e| e.expect("DIR entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "j2k"))
        .collect();
    paths.sort();
    let tiles: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!tiles.is_empty(), "no .j2k files in {dir}");
    let decode_all = || {
        let mut pixels = 0usize;
        for tile in &tiles {
            let ycbcr = jpeg2000::holds_ycbcr(compression);
            let chunk = jpeg2000::decode(tile, ycbcr, (4096, 4096)).expect("a decodable tile");
            let rgb = to_rgb(chunk.samples, chunk.colour, chunk.width, chunk.height).unwrap();
            pixels += rgb.len() / 3;
        }
        pixels
    };
    let pixels = decode_all();
    let mut rates = Vec::new();
    for round in 1..=rounds {
        let start = Instant::now();
        std::hint::black_box(decode_all());
        let seconds = start.elapsed().as_secs_f64();
        let rate = tiles.len() as f64 / seconds;
        println!(
            "round {round}: {} tiles ({:.1} Mpx) in {seconds:.3} s, {rate:.1} tiles/s",
            tiles.len(),
            pixels as f64 / 1e6
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median {:.1} tiles/s", rates[rates.len() / 2]);
}
