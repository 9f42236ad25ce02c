//! Winograd's F(4x4, 3x3) with AVX-512 (see [`super`]): sixteen output channels by sixteen
//! tiles at once, one register per output channel, each weight broadcast from memory into its
//! multiply-add. LLVM does not keep sixteen accumulators of plain arrays in registers, hence
//! the intrinsics. Sixteen tiles lie in the lanes of a register, and the split of each input
//! row into its columns modulo 4 takes two rounds of even/odd permutes of 64 inputs.

use std::arch::x86_64::{
    __m512, __m512i, _MM_HINT_T1, _mm_prefetch, _mm512_add_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps,
    _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_max_ps,
    _mm512_permutex2var_ps, _mm512_set1_ps, _mm512_setr_epi32, _mm512_setzero_ps, _mm512_storeu_ps,
    _mm512_sub_ps, _mm512_undefined_ps,
};
use std::ops::Range;

use super::{IN, OUT, POSITIONS, Tiles, Transformed, convolve};
use crate::network::conv::{Epilogue, Shape4, Unwritten};

/// Output channels computed together: one 16-lane register each.
const GROUP: usize = 16;

/// Tiles per register.
const TILES: usize = 16;

/// [`super::winograd3x3`] by F(4x4, 3x3).
///
/// # Safety
/// The CPU must have AVX-512 F.
pub(super) unsafe fn winograd3x3(
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    epilogue: Epilogue,
) -> Vec<f32> {
    convolve::<GROUP>(x, shape, weight, c_out, TILES, |tiles, x, u, rows, out| {
        // SAFETY: the caller guarantees AVX-512 F.
        unsafe { convolve_rows(tiles, x, u, epilogue, rows, out) }
    })
}

/// Padded row `padded_row` of channel `c` into `quarters` (`[4][quarter_len]`): padded
/// column `4j + k` is `quarters[k][j]`, and padded (row, column) is input (row - 1,
/// column - 1). Sixty-four inputs at a time: two rounds of even/odd splits give each
/// residue's sixteen values; past the row's end the loads read zeros, which are the
/// padding.
#[target_feature(enable = "avx512f")]
fn split_row(
    tiles: &Tiles,
    image: &[f32],
    channel: usize,
    padded_row: usize,
    quarters: &mut [f32],
) {
    let len = tiles.quarter_len();
    let Some(y) = padded_row.checked_sub(1).filter(|&y| y < tiles.height) else {
        quarters.fill(0.0);
        return;
    };
    let row = &image[(channel * tiles.height + y) * tiles.width..][..tiles.width];
    // The same row of the next channel, which the next call for this row reads: fetched
    // into L2 meanwhile, since the planes are too far apart for the hardware to predict.
    let next =
        (channel + 1 < tiles.c_in).then(|| row.as_ptr().wrapping_add(tiles.height * tiles.width));
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let split = |a: __m512, b: __m512, index: __m512i| _mm512_permutex2var_ps(a, index, b);
    for (chunk, start) in (0..tiles.width).step_by(4 * TILES).enumerate() {
        let load = |at: usize| {
            let count = tiles.width.saturating_sub(start + at).min(TILES);
            let mask = ((1u32 << count) - 1) as u16;
            // SAFETY: the mask loads only the `count` values left in the row (the address of
            // the masked-off lanes may lie past it; they are not read).
            unsafe { _mm512_maskz_loadu_ps(mask, row.as_ptr().wrapping_add(start + at)) }
        };
        if let Some(next) = next {
            for line in 0..4 {
                _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(start + line * TILES).cast());
            }
        }
        let [a, b, c, d] = [0, TILES, 2 * TILES, 3 * TILES].map(load);
        let (even_ab, odd_ab) = (split(a, b, even), split(a, b, odd));
        let (even_cd, odd_cd) = (split(c, d, even), split(c, d, odd));
        // Input column 4j + m for m = 0..3 (padded 4j + m + 1).
        let residues = [
            split(even_ab, even_cd, even),
            split(odd_ab, odd_cd, even),
            split(even_ab, even_cd, odd),
            split(odd_ab, odd_cd, odd),
        ];
        let j = chunk * TILES;
        // Padded columns 4j + 1, 4j + 2, 4j + 3, and 4(j + 1) + 0.
        let targets = [len + j, 2 * len + j, 3 * len + j, j + 1];
        for (values, at) in residues.into_iter().zip(targets) {
            // SAFETY: `at + 16 <= 4 * len`: j + 16 <= cols_padded (the chunks of 64
            // inputs are the blocks of sixteen tiles).
            unsafe { _mm512_storeu_ps(quarters[at..at + TILES].as_mut_ptr(), values) };
        }
    }
}

/// `V = B^T d B` of tile row `row` for every input channel into `v` (see
/// [`Tiles::transformed_len`]).
#[target_feature(enable = "avx512f")]
fn transform_row(
    tiles: &Tiles,
    image: &[f32],
    row: usize,
    scratch: &mut [f32],
    v: &mut [f32],
    blocks: Range<usize>,
) {
    let len = tiles.quarter_len();
    for c in 0..tiles.c_in {
        for (r, quarters) in scratch.chunks_exact_mut(4 * len).enumerate() {
            split_row(tiles, image, c, OUT * row + r, quarters);
        }
        for col in blocks.clone().step_by(TILES) {
            // Arrays of vectors as literals: moved through `map` or `from_fn` they are
            // copied through memory, and built by loops they are zeroed first.
            let row = |r: usize| input_transform(load_row(&scratch[r * 4 * len..], len, col));
            let t = [row(0), row(1), row(2), row(3), row(4), row(5)];
            // B^T (d B) down each column.
            #[allow(clippy::needless_range_loop)] // k picks a column across the rows
            for k in 0..IN {
                let column = [t[0][k], t[1][k], t[2][k], t[3][k], t[4][k], t[5][k]];
                for (r, values) in input_transform(column).into_iter().enumerate() {
                    let at = tiles.transformed_at(col, r * IN + k, c);
                    // SAFETY: `v` holds `transformed_len` values, `at + 16` among them.
                    unsafe { _mm512_storeu_ps(v[at..at + TILES].as_mut_ptr(), values) };
                }
            }
        }
    }
}

/// Tile rows `rows` into `out` (each output channel's rows from `4 * rows.start`).
#[target_feature(enable = "avx512f")]
fn convolve_rows(
    tiles: &Tiles,
    image: &[f32],
    u: &[[f32; GROUP]],
    epilogue: Epilogue,
    rows: Range<usize>,
    out: &mut [&mut [Unwritten]],
) {
    let c_in = tiles.c_in;
    let c_out = out.len();
    let first_row = OUT * rows.start;
    let mut scratch = tiles.row_scratch();
    // The sums of one block of tiles: `[position][output channel]`, 36 KB.
    let mut m = [[_mm512_undefined_ps(); GROUP]; POSITIONS];
    let mut transformed = Transformed::take(tiles.transformed_len());
    let v = transformed.values();
    for row in rows {
        let blocks = tiles.active_blocks(row, &epilogue);
        if !blocks.is_empty() {
            transform_row(tiles, image, row, &mut scratch, v, blocks.clone());
        }
        for col in blocks.step_by(TILES) {
            for (group, weights) in u.chunks_exact(POSITIONS * c_in).enumerate() {
                for (position, sums) in m.iter_mut().enumerate() {
                    let weights = &weights[position * c_in..][..c_in];
                    *sums = products(weights, tiles.block_inputs(v, col, position));
                }
                let first = group * GROUP;
                for c in 0..GROUP.min(c_out - first) {
                    let bias = _mm512_set1_ps(epilogue.bias(first + c));
                    let y = output_transform(&m, c);
                    let out = &mut out[first + c][..];
                    write_tiles(tiles, out, row, first_row, col, y, bias, epilogue.relu);
                }
            }
        }
        tiles.zero_outside(out, row, first_row, &epilogue);
    }
}

/// The six inputs along one row of sixteen tiles from tile column `col` (padded columns
/// `4j .. 4j + 5`), from that row's four residues modulo 4 (`quarters`, `[4][len]`).
#[target_feature(enable = "avx512f")]
#[inline]
fn load_row(quarters: &[f32], len: usize, col: usize) -> [__m512; IN] {
    let load = |k: usize| {
        let at = (k % 4) * len + col + k / 4;
        // SAFETY: `at + 16 <= 4 * len` (col + 1 + 16 <= len).
        unsafe { _mm512_loadu_ps(quarters[at..at + TILES].as_ptr()) }
    };
    [load(0), load(1), load(2), load(3), load(4), load(5)]
}

/// `B^T d` for six vectors of sixteen tiles: the rows of
/// `[4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn input_transform([d0, d1, d2, d3, d4, d5]: [__m512; IN]) -> [__m512; IN] {
    let (two, four, five) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(5.0),
    );
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    let (d1_minus_d3, d4_minus_d2) = (sub(d1, d3), sub(d4, d2));
    [
        _mm512_fmadd_ps(four, d0, _mm512_fnmadd_ps(five, d2, d4)),
        _mm512_fnmadd_ps(four, add(d1, d2), add(d3, d4)),
        _mm512_fmadd_ps(four, sub(d1, d2), sub(d4, d3)),
        _mm512_fnmadd_ps(two, d1_minus_d3, d4_minus_d2),
        _mm512_fmadd_ps(two, d1_minus_d3, d4_minus_d2),
        _mm512_fmadd_ps(four, d1, _mm512_fnmadd_ps(five, d3, d5)),
    ]
}

/// `A^T m` for six vectors: the rows of
/// `[1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn inverse_transform([m0, m1, m2, m3, m4, m5]: [__m512; IN]) -> [__m512; OUT] {
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    let (sum12, diff12, sum34, diff34) = (add(m1, m2), sub(m1, m2), add(m3, m4), sub(m3, m4));
    [
        add(add(m0, sum12), sum34),
        _mm512_fmadd_ps(_mm512_set1_ps(2.0), diff34, diff12),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), sum34, sum12),
        add(_mm512_fmadd_ps(_mm512_set1_ps(8.0), diff34, diff12), m5),
    ]
}

/// `sum_i weights[i][c] * inputs[i]` for the sixteen channels c, `inputs` `[c_in][16]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn products(weights: &[[f32; GROUP]], inputs: &[f32]) -> [__m512; GROUP] {
    let mut acc = [_mm512_setzero_ps(); GROUP];
    for (w, x) in weights.iter().zip(inputs.as_chunks::<TILES>().0) {
        // SAFETY: `x` holds the sixteen values loaded (unaligned loads are allowed).
        let x = unsafe { _mm512_loadu_ps(x.as_ptr()) };
        for (sum, &w) in acc.iter_mut().zip(w) {
            *sum = _mm512_fmadd_ps(_mm512_set1_ps(w), x, *sum);
        }
    }
    acc
}

/// `A^T M A` of channel `c` for sixteen tiles: `y[i][j]` is output row i, column j of each
/// tile. The steps of `super::output_transform` on registers: a form generic over both would
/// be compiled without AVX-512 and pass its vectors through memory.
#[target_feature(enable = "avx512f")]
#[inline]
fn output_transform(m: &[[__m512; GROUP]; POSITIONS], c: usize) -> [[__m512; OUT]; OUT] {
    // A^T M: each column k of M down its six rows (literals, as in `transform_row`).
    let column = |k: usize| {
        let at = |r: usize| m[r * IN + k][c];
        inverse_transform([at(0), at(1), at(2), at(3), at(4), at(5)])
    };
    let columns = [
        column(0),
        column(1),
        column(2),
        column(3),
        column(4),
        column(5),
    ];
    // (A^T M) A: each of the four rows along its six columns.
    let row = |i: usize| {
        let at = |k: usize| columns[k][i];
        inverse_transform([at(0), at(1), at(2), at(3), at(4), at(5)])
    };
    [row(0), row(1), row(2), row(3)]
}

/// Writes sixteen tiles' 4x4 outputs plus `bias`, clamped at zero if `relu`, where they fall
/// inside the image, into rows that start at output row `first_row`: each output row's four
/// columns interleaved into 64 values, stored whole or under masks at the image's right edge.
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)] // the inner step's state, one call site
fn write_tiles(
    tiles: &Tiles,
    out: &mut [Unwritten],
    row: usize,
    first_row: usize,
    col: usize,
    y: [[__m512; OUT]; OUT],
    bias: __m512,
    relu: bool,
) {
    let width = tiles.width;
    let first = OUT * col;
    let count = (OUT * TILES).min(width.saturating_sub(first));
    if count == 0 {
        return;
    }
    // Lanes 0..16 are the first operand's, 16..32 the second's: pairs of single values, then
    // pairs of pairs.
    let pairs_low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let pairs_high =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let quads_low = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    let quads_high =
        _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    let mix = |a: __m512, index: __m512i, b: __m512| _mm512_permutex2var_ps(a, index, b);
    for (i, [y0, y1, y2, y3]) in y.into_iter().enumerate() {
        let out_row = OUT * row + i;
        if out_row >= tiles.height {
            break;
        }
        // (y0, y1) and (y2, y3) interleaved in pairs, then the pairs interleaved: tile j's
        // four outputs at 4j .. 4j + 3.
        let (a_low, a_high) = (mix(y0, pairs_low, y1), mix(y0, pairs_high, y1));
        let (b_low, b_high) = (mix(y2, pairs_low, y3), mix(y2, pairs_high, y3));
        let values = [
            mix(a_low, quads_low, b_low),
            mix(a_low, quads_high, b_low),
            mix(a_high, quads_low, b_high),
            mix(a_high, quads_high, b_high),
        ];
        let at = (out_row - first_row) * width + first;
        let dst = out[at..at + count].as_mut_ptr().cast::<f32>();
        for (part, values) in values.into_iter().enumerate() {
            let start = part * TILES;
            if start >= count {
                break;
            }
            let values = _mm512_add_ps(values, bias);
            let values = if relu {
                _mm512_max_ps(values, _mm512_setzero_ps())
            } else {
                values
            };
            let lanes = (count - start).min(TILES);
            // SAFETY: the stores write `count` values from `dst`, which the slice taken above
            // holds: each part whole, or under a mask of its first `lanes` lanes.
            unsafe {
                if lanes == TILES {
                    _mm512_storeu_ps(dst.add(start), values);
                } else {
                    let mask = ((1u32 << lanes) - 1) as u16;
                    _mm512_mask_storeu_ps(dst.add(start), mask, values);
                }
            }
        }
    }
}
