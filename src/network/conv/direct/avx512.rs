//! The direct kernel with AVX-512: sixteen output channels by sixteen outputs of a row at once,
//! one register per output channel, each weight broadcast from memory into its multiply-add
//! (see `winograd::avx512` for why sixteen, and why intrinsics).

use std::arch::x86_64::{
    __m512, _MM_HINT_T0, _mm_prefetch, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
    _mm512_max_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};
use std::ops::Range;

use super::{Epilogue, LANES, Pass, Planes, Unwritten};

/// Output channels computed together: one 16-lane register each.
pub(super) const GROUP: usize = 16;

/// Outputs per register; the planes' rows are whole blocks of [`LANES`] outputs.
const OUTPUTS: usize = 16;
const _: () = assert!(OUTPUTS == LANES);

/// How far ahead along a row the inputs are prefetched. A row of outputs reads three input
/// rows of every channel (and column phase): more streams than the hardware prefetcher follows,
/// so without this most loads waited on memory.
const AHEAD: usize = 4 * OUTPUTS;

/// [`Pass::channel_group`] for weights grouped by [`GROUP`] output channels.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)] // Pass::channel_group's, for the wider group
pub(super) unsafe fn channel_group<const ROWS: usize, const COLS: usize>(
    pass: &Pass<ROWS, COLS>,
    layout: &Planes,
    planes: &[f32],
    weights: &[[f32; GROUP]],
    epilogue: Epilogue,
    group: usize,
    rows: &Range<usize>,
    out: &mut [&mut [Unwritten]],
) {
    let plane = layout.plane();
    let (in_channels, row_len) = (layout.channels, layout.row);
    let (w_out, row_step) = (pass.w_out, pass.row_step);
    let start: [f32; GROUP] = std::array::from_fn(|c| epilogue.bias(group * GROUP + c));
    // Each tap's offset from the first input of a row of outputs, in channel 0.
    let offsets: [[usize; COLS]; ROWS] = pass
        .taps
        .map(|row| row.map(|tap| tap.plane * in_channels * plane + tap.row * row_len + tap.col));
    // One tap per input row and column phase starts each cache line the taps read.
    let streams: Vec<usize> = pass
        .taps
        .as_flattened()
        .iter()
        .zip(offsets.as_flattened())
        .filter(|(tap, _)| tap.col == 0)
        .map(|(_, &offset)| offset + AHEAD)
        .collect();
    for y in rows.clone() {
        for x0 in pass.columns(y, &epilogue, OUTPUTS).step_by(OUTPUTS) {
            let mut acc = [_mm512_setzero_ps(); GROUP];
            for (sum, &b) in acc.iter_mut().zip(&start) {
                *sum = _mm512_set1_ps(b);
            }
            let first = row_step * y * row_len + x0;
            for ci in 0..in_channels {
                let channel = &planes[ci * plane + first..];
                for &ahead in &streams {
                    // A hint, never a fault: the address may lie past the planes.
                    _mm_prefetch::<_MM_HINT_T0>(channel.as_ptr().wrapping_add(ahead).cast());
                }
                let taps = &weights[ci * ROWS * COLS..][..ROWS * COLS];
                for (tap, &offset) in taps.iter().zip(offsets.as_flattened()) {
                    let x = &channel[offset..offset + OUTPUTS];
                    // SAFETY: `x` holds the sixteen values loaded.
                    let x = unsafe { _mm512_loadu_ps(x.as_ptr()) };
                    for (sum, &w) in acc.iter_mut().zip(tap) {
                        *sum = _mm512_fmadd_ps(_mm512_set1_ps(w), x, *sum);
                    }
                }
            }
            let count = OUTPUTS.min(w_out - x0);
            let at = (y - rows.start) * w_out + x0;
            for (out, sum) in out.iter_mut().zip(acc) {
                let sum = if epilogue.relu {
                    _mm512_max_ps(sum, _mm512_setzero_ps())
                } else {
                    sum
                };
                store(&mut out[at..at + count], sum);
            }
        }
        pass.zero_outside(out, y, rows, &epilogue);
    }
}

/// The first `dst.len()` (at most 16) lanes of `values` into `dst`.
#[target_feature(enable = "avx512f")]
#[inline]
fn store(dst: &mut [Unwritten], values: __m512) {
    let to = dst.as_mut_ptr().cast::<f32>();
    // SAFETY: the stores write `dst.len()` values: all sixteen when it holds them, else under a
    // mask of its first lanes.
    unsafe {
        if dst.len() == OUTPUTS {
            _mm512_storeu_ps(to, values);
        } else {
            _mm512_mask_storeu_ps(to, ((1u32 << dst.len()) - 1) as u16, values);
        }
    }
}
