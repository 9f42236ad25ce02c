//! A row of tiles with AVX-512: the products summed over input channels for sixteen output
//! channels by sixteen tiles at once, one register per output channel, each weight broadcast
//! from memory into its multiply-add.
//!
//! With AVX2 the plain loops hold four output channels by sixteen tiles (eight registers), so
//! each input vector loaded serves eight multiply-adds; here it serves sixteen of twice the
//! width, and the sixteen independent sums keep both FMA units busy. LLVM does not keep that
//! many accumulators of plain arrays in registers, hence the intrinsics.

use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_max_ps,
    _mm512_permutex2var_ps, _mm512_set1_ps, _mm512_setr_epi32, _mm512_setzero_ps, _mm512_storeu_ps,
    _mm512_sub_ps,
};
use std::ops::Range;

use super::{Epilogue, LANES, POSITIONS, Tiles, Unwritten, with_transformed};

/// Output channels computed together: one 16-lane register each.
pub(super) const GROUP: usize = 16;

/// Tiles per register; the tiling pads rows of tiles to whole blocks of [`LANES`].
const TILES: usize = 16;
const _: () = assert!(TILES == LANES);

/// [`Tiles::convolve_rows`] for weights grouped by [`GROUP`] output channels.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn convolve_rows(
    tiles: &Tiles,
    image: &[f32],
    u: &[[f32; GROUP]],
    epilogue: Epilogue,
    rows: Range<usize>,
    out: &mut [&mut [Unwritten]],
) {
    let (c_in, cols_padded) = (tiles.c_in, tiles.cols_padded);
    let c_out = out.len();
    let first_row = 2 * rows.start;
    let mut scratch = tiles.row_scratch();
    // The sums of one block of tiles: `[position][output channel]`, 16 KB.
    let mut m = [[_mm512_setzero_ps(); GROUP]; POSITIONS];
    with_transformed(tiles.transformed_len(), |v| {
        for row in rows {
            tiles.transform_row(image, row, &mut scratch, v);
            for col in (0..cols_padded).step_by(TILES) {
                for (group, weights) in u.chunks_exact(POSITIONS * c_in).enumerate() {
                    for (position, sums) in m.iter_mut().enumerate() {
                        let weights = &weights[position * c_in..][..c_in];
                        *sums = products(weights, tiles.block_inputs(v, col, position));
                    }
                    let first = group * GROUP;
                    for c in 0..GROUP.min(c_out - first) {
                        let b = _mm512_set1_ps(epilogue.bias(first + c));
                        let y = output_transform(&m, c);
                        let out = &mut out[first + c][..];
                        write_tiles(tiles, out, row, first_row, col, y, b, epilogue.relu);
                    }
                }
            }
        }
    });
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

/// `A^T M A` of channel `c` for sixteen tiles (see [`super::output_transform`]): `y[i][j]` is
/// output row i, column j of each tile.
#[target_feature(enable = "avx512f")]
#[inline]
fn output_transform(m: &[[__m512; GROUP]; POSITIONS], c: usize) -> [[__m512; 2]; 2] {
    let mut rows = [[_mm512_setzero_ps(); 4]; 2];
    for k in 0..4 {
        let [m0, m1, m2, m3] = [m[k][c], m[4 + k][c], m[8 + k][c], m[12 + k][c]];
        rows[0][k] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
        rows[1][k] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
    }
    rows.map(|[t0, t1, t2, t3]| {
        [
            _mm512_add_ps(_mm512_add_ps(t0, t1), t2),
            _mm512_sub_ps(_mm512_sub_ps(t1, t2), t3),
        ]
    })
}

/// Writes sixteen tiles' 2x2 outputs plus `bias`, clamped at zero if `relu`, where they fall
/// inside the image, into rows that start at output row `first_row`: each output row's two
/// columns interleaved into 32 values, stored whole or under a mask at the image's right edge.
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)] // the inner step's state, one call site
fn write_tiles(
    tiles: &Tiles,
    out: &mut [Unwritten],
    row: usize,
    first_row: usize,
    col: usize,
    y: [[__m512; 2]; 2],
    bias: __m512,
    relu: bool,
) {
    let width = tiles.width;
    let first = 2 * col;
    let count = (2 * TILES).min(width.saturating_sub(first));
    if count == 0 {
        return;
    }
    // Lanes 0..16 are the first operand's, 16..32 the second's.
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (i, [left, right]) in y.into_iter().enumerate() {
        let out_row = 2 * row + i;
        if out_row >= tiles.height {
            break;
        }
        let at = (out_row - first_row) * width + first;
        let dst = out[at..at + count].as_mut_ptr().cast::<f32>();
        let low = _mm512_add_ps(_mm512_permutex2var_ps(left, low, right), bias);
        let high = _mm512_add_ps(_mm512_permutex2var_ps(left, high, right), bias);
        let (low, high) = if relu {
            let zero = _mm512_setzero_ps();
            (_mm512_max_ps(low, zero), _mm512_max_ps(high, zero))
        } else {
            (low, high)
        };
        // SAFETY: the stores write `count` values from `dst`, which the slice taken above holds:
        // whole when `count` is 32, else under masks of their first `count` lanes.
        unsafe {
            if count == 2 * TILES {
                _mm512_storeu_ps(dst, low);
                _mm512_storeu_ps(dst.add(TILES), high);
            } else {
                let mask = |n: usize| ((1u32 << n.min(TILES)) - 1) as u16;
                _mm512_mask_storeu_ps(dst, mask(count), low);
                if count > TILES {
                    _mm512_mask_storeu_ps(dst.add(TILES), mask(count - TILES), high);
                }
            }
        }
    }
}
