//! The direct kernel: every tap of the kernel reads eight consecutive outputs' inputs with one
//! contiguous load and four output channels accumulate in registers.
//!
//! The input is zero-padded by one pixel and split by column phase (one plane at stride 1, even
//! and odd columns at stride 2), so each tap is a fixed offset into one plane. The same loop,
//! with other tap tables, computes the input gradient of a stride-2 convolution: each of the
//! four parities of the gradient's pixels is a small stride-1 correlation of the output
//! gradient with the kernel taps that reach it.

use std::ops::Range;

use super::{
    CHANNELS, Epilogue, Kernel, LANES, Shape4, Unwritten, channel_bands, madd_block, output_side,
    per_band, per_image, store_lanes, unwritten, written, zero, zero_outside,
};
#[cfg(target_arch = "x86_64")]
use super::{avx2_fma, avx512};

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Output rows per band computed by one thread: the input rows a band reads (nine per channel
/// and column phase at stride 2) stay in cache while every group of output channels reads them.
const BAND: usize = 4;

/// Where one kernel tap reads: plane (column phase), row and column offsets in padded planes.
#[derive(Clone, Copy, Debug)]
struct Tap {
    plane: usize,
    row: usize,
    col: usize,
}

/// [`super::conv3x3_f32`] by the direct kernel (stride 1 or 2; shapes checked there).
pub fn direct3x3(
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    epilogue: Epilogue,
    stride: usize,
) -> Vec<f32> {
    direct3x3_with(Kernel::best(), x, shape, weight, c_out, epilogue, stride)
}

/// [`direct3x3`] with the given kernel, which the CPU must run (see [`Kernel::available`]).
pub(super) fn direct3x3_with(
    kernel: Kernel,
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    epilogue: Epilogue,
    stride: usize,
) -> Vec<f32> {
    let [batch, c_in, height, width] = shape;
    let (h_out, w_out) = (output_side(height, stride), output_side(width, stride));
    let planes = Planes::new(shape, stride, w_out);
    // Tap (kh, kw) of output column x reads padded column stride x + kw: element x + kw / stride
    // of plane kw % stride.
    let taps: [[Tap; 3]; 3] = std::array::from_fn(|kh| {
        std::array::from_fn(|kw| Tap {
            plane: kw % stride,
            row: kh,
            col: kw / stride,
        })
    });
    let pass = Pass {
        taps,
        row_step: stride,
        h_out,
        w_out,
    };
    let weight_of = |o: usize, k: usize| weight[o * c_in * 9 + k];
    let image_out = c_out * h_out * w_out;
    let mut out = unwritten(batch * image_out);
    // A band computes all output channels for its rows, so the input rows it reads are read
    // from memory once and from cache by every later group.
    let band_rows = |band: usize| band * BAND..((band + 1) * BAND).min(h_out);
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512 {
        assert!(avx512(), "the CPU has no AVX-512");
        let packed = pack_weights::<{ avx512::GROUP }>(c_out, c_in * 9, weight_of);
        per_image(x, c_in * height * width, &mut out, image_out, |x, out| {
            let padded = planes.fill(x);
            let bands = channel_bands(out, h_out * w_out, BAND * w_out);
            per_band(bands, |band, mut out| {
                let rows = band_rows(band);
                for (group, out) in out.chunks_mut(avx512::GROUP).enumerate() {
                    let weights = &packed[group];
                    // SAFETY: the CPU has AVX-512 (asserted above).
                    unsafe {
                        avx512::channel_group(
                            &pass, &planes, &padded, weights, epilogue, group, &rows, out,
                        )
                    };
                }
            });
        });
        // SAFETY: as below.
        return unsafe { written(out) };
    }
    let packed = pack_weights::<CHANNELS>(c_out, c_in * 9, weight_of);
    per_image(x, c_in * height * width, &mut out, image_out, |x, out| {
        let padded = planes.fill(x);
        let bands = channel_bands(out, h_out * w_out, BAND * w_out);
        per_band(bands, |band, mut out| {
            let rows = band_rows(band);
            for (group, out) in out.chunks_mut(CHANNELS).enumerate() {
                let weights = &packed[group];
                pass.channel_group(
                    kernel, &planes, &padded, weights, epilogue, group, &rows, out,
                );
            }
        });
    });
    // SAFETY: the bands cover every output row, their groups every channel, and each row is
    // written whole.
    unsafe { written(out) }
}

/// The gradient with respect to the input `[batch, c_in, height, width]` of a 3x3 convolution
/// with stride 2 and padding 1, from the output gradient `grad` `[batch, c_out, h_out, w_out]`
/// and `weight` `[c_out, c_in, 3, 3]`.
///
/// Input row `i` received `weight[.., kh, ..] * grad[y]` wherever `2 y + kh - 1 = i`: an even
/// row from tap 1 of row `i / 2`, an odd row from taps 0 and 2 of rows `(i + 1) / 2` and
/// `(i - 1) / 2`; columns alike. Each parity is computed on its own and interleaved.
pub fn input_gradient_stride2(
    grad: &[f32],
    grad_shape: Shape4,
    weight: &[f32],
    [height, width]: [usize; 2],
) -> Vec<f32> {
    let [batch, c_out, h_out, w_out] = grad_shape;
    let c_in = weight.len() / (c_out * 9);
    assert_eq!(
        weight.len(),
        c_out * c_in * 9,
        "weight does not match the gradient"
    );
    assert_eq!(
        grad.len(),
        batch * c_out * h_out * w_out,
        "gradient does not match its shape"
    );
    assert!(
        output_side(height, 2) == h_out && output_side(width, 2) == w_out,
        "a {height}x{width} input does not give a {h_out}x{w_out} output at stride 2"
    );
    let image_in = c_in * height * width;
    let mut out = vec![0.0; batch * image_in];
    let planes = Planes::new(grad_shape, 1, w_out.next_multiple_of(LANES));
    let parities = [(0, 0), (0, 1), (1, 0), (1, 1)]
        .map(|parity| Parity::new(parity, weight, c_in, c_out, [height, width]));
    per_image(grad, c_out * h_out * w_out, &mut out, image_in, |g, out| {
        let padded = planes.fill(g);
        for parity in &parities {
            let part = match (parity.pi, parity.pj) {
                (0, 0) => parity.run::<1, 1>(&planes, &padded),
                (0, _) => parity.run::<1, 2>(&planes, &padded),
                (_, 0) => parity.run::<2, 1>(&planes, &padded),
                _ => parity.run::<2, 2>(&planes, &padded),
            };
            let (rows, cols) = (parity.rows, parity.cols);
            for ci in 0..c_in {
                for y in 0..rows {
                    let src = &part[(ci * rows + y) * cols..][..cols];
                    let dst = &mut out[(ci * height + 2 * y + parity.pi) * width..][..width];
                    for (x, &value) in src.iter().enumerate() {
                        dst[2 * x + parity.pj] = value;
                    }
                }
            }
        }
    });
    out
}

/// The pixels of one parity `(pi, pj)` of a stride-2 convolution's input gradient: a stride-1
/// correlation of the output gradient with the taps that reach them.
struct Parity {
    pi: usize,
    pj: usize,
    rows: usize,
    cols: usize,
    c_in: usize,
    taps: Vec<Tap>,
    packed: Vec<Vec<[f32; CHANNELS]>>,
}

impl Parity {
    fn new(
        (pi, pj): (usize, usize),
        weight: &[f32],
        c_in: usize,
        c_out: usize,
        [height, width]: [usize; 2],
    ) -> Self {
        // (kernel index, offset from y to the gradient row) of the taps reaching a parity; the
        // gradient is padded by one, so offset d is padded row y + 1 + d.
        let reaching = |parity: usize| -> &'static [(usize, usize)] {
            if parity == 0 {
                &[(1, 0)]
            } else {
                &[(0, 1), (2, 0)]
            }
        };
        let mut taps = Vec::new();
        let mut kernel_taps = Vec::new();
        for &(kh, dy) in reaching(pi) {
            for &(kw, dx) in reaching(pj) {
                taps.push(Tap {
                    plane: 0,
                    row: dy + 1,
                    col: dx + 1,
                });
                kernel_taps.push(kh * 3 + kw);
            }
        }
        // Output channel ci of this pass takes input channel co of the gradient.
        let n = kernel_taps.len();
        let packed = pack_weights::<CHANNELS>(c_in, c_out * n, |ci, k| {
            let (co, t) = (k / n, k % n);
            weight[(co * c_in + ci) * 9 + kernel_taps[t]]
        });
        Self {
            pi,
            pj,
            rows: (height - pi).div_ceil(2),
            cols: (width - pj).div_ceil(2),
            c_in,
            taps,
            packed,
        }
    }

    /// `[c_in (rounded up to whole groups), rows, cols]` for one image's padded gradient, with
    /// `ROWS` x `COLS` taps (the parity's).
    fn run<const ROWS: usize, const COLS: usize>(
        &self,
        planes: &Planes,
        padded: &[f32],
    ) -> Vec<f32> {
        let pass = Pass::<ROWS, COLS> {
            taps: std::array::from_fn(|r| std::array::from_fn(|c| self.taps[r * COLS + c])),
            row_step: 1,
            h_out: self.rows,
            w_out: self.cols,
        };
        let mut part = unwritten(self.c_in.next_multiple_of(CHANNELS) * self.rows * self.cols);
        let mut channels: Vec<_> = part.chunks_mut(self.rows * self.cols).collect();
        for (index, group) in channels.chunks_mut(CHANNELS).enumerate() {
            let packed = &self.packed[index];
            let kernel = Kernel::best_plain();
            pass.channel_group(
                kernel,
                planes,
                padded,
                packed,
                Epilogue::default(),
                index,
                &(0..self.rows),
                group,
            );
        }
        // SAFETY: each group wrote every row and column of its channels.
        unsafe { written(part) }
    }
}

/// Weights regrouped per block of `N` output channels as `[taps][N]` (channels past `c_out`
/// zero), so one tap's weights for the block are adjacent; `weight(o, k)` is tap `k` (input
/// channel major) of output channel `o`.
fn pack_weights<const N: usize>(
    c_out: usize,
    taps: usize,
    weight: impl Fn(usize, usize) -> f32,
) -> Vec<Vec<[f32; N]>> {
    (0..c_out.div_ceil(N))
        .map(|group| {
            (0..taps)
                .map(|k| {
                    let mut block = [0.0; N];
                    for (c, value) in block.iter_mut().enumerate() {
                        let o = group * N + c;
                        if o < c_out {
                            *value = weight(o, k);
                        }
                    }
                    block
                })
                .collect()
        })
        .collect()
}

/// The zero-padded input of one image split by column phase: plane `p` holds, for each padded
/// row, padded columns `p, p + stride, p + 2 stride, ...`.
struct Planes {
    channels: usize,
    height: usize,
    width: usize,
    stride: usize,
    /// Row length: whole blocks of [`LANES`] outputs plus the taps' reach.
    row: usize,
    /// Padded rows.
    rows: usize,
}

impl Planes {
    /// Planes for `shape`'s images, read by outputs `w_out` wide.
    fn new([_, channels, height, width]: Shape4, stride: usize, w_out: usize) -> Self {
        Self {
            channels,
            height,
            width,
            stride,
            row: w_out.next_multiple_of(LANES) + 2,
            rows: height + 2,
        }
    }

    fn plane(&self) -> usize {
        self.rows * self.row
    }

    /// The padded planes of `image` (`[channels, height, width]`), each channel's planes filled
    /// by one task; every value is written once, the padding with zeros.
    fn fill(&self, image: &[f32]) -> Vec<f32> {
        let plane = self.plane();
        let mut planes = unwritten(self.stride * self.channels * plane);
        let mut tasks: Vec<Vec<&mut [Unwritten]>> = Vec::new();
        tasks.resize_with(self.channels, Vec::new);
        for phase in planes.chunks_mut(self.channels * plane) {
            for (task, channel) in tasks.iter_mut().zip(phase.chunks_mut(plane)) {
                task.push(channel);
            }
        }
        per_band(tasks, |c, mut phases| {
            let src = &image[c * self.height * self.width..][..self.height * self.width];
            for padded_row in 0..self.rows {
                let mut dst = phases
                    .iter_mut()
                    .map(|phase| &mut phase[padded_row * self.row..][..self.row]);
                let y = padded_row.checked_sub(1).filter(|&y| y < self.height);
                let src_row = y.map(|y| &src[y * self.width..][..self.width]);
                match (src_row, dst.next(), dst.next()) {
                    (Some(src_row), Some(dst), None) => fill_row(src_row, dst),
                    (Some(src_row), Some(even), Some(odd)) => split_row(src_row, even, odd),
                    (None, first, second) => first.into_iter().chain(second).for_each(zero),
                    (Some(_), None, _) => unreachable!("a stride of 1 or 2 has planes"),
                }
            }
        });
        // SAFETY: every row of every plane was written above.
        unsafe { written(planes) }
    }
}

/// A padded row at stride 1: a zero, the input row, zeros.
fn fill_row(src: &[f32], dst: &mut [Unwritten]) {
    let (pad, rest) = dst.split_at_mut(1);
    let (values, end) = rest.split_at_mut(src.len());
    zero(pad);
    values.write_copy_of_slice(src);
    zero(end);
}

/// A padded row at stride 2, split into the padded row's even columns (`even`: a zero, then
/// input columns 1, 3, ...) and its odd ones (`odd`: input columns 0, 2, ...), then zeros.
fn split_row(src: &[f32], even: &mut [Unwritten], odd: &mut [Unwritten]) {
    even[0].write(0.0);
    // Whole pairs in one loop without branches, which vectorises.
    let pairs = src.chunks_exact(2);
    let (n, last) = (pairs.len(), pairs.remainder().first().copied());
    for ((o, e), pair) in odd.iter_mut().zip(&mut even[1..=n]).zip(pairs) {
        o.write(pair[0]);
        e.write(pair[1]);
    }
    let odd_end = match last {
        Some(last) => {
            odd[n].write(last);
            n + 1
        }
        None => n,
    };
    zero(&mut odd[odd_end..]);
    zero(&mut even[n + 1..]);
}

/// One convolution pass over padded planes: output row `y` reads padded row
/// `row_step * y + tap.row`.
///
/// The taps are a constant grid of `ROWS` x `COLS` so that the loop along a row unrolls and
/// vectorises: with nine taps in one run-time loop, LLVM left most of the wasm kernel scalar and
/// it ran two to three times slower.
struct Pass<const ROWS: usize, const COLS: usize> {
    taps: [[Tap; COLS]; ROWS],
    row_step: usize,
    h_out: usize,
    w_out: usize,
}

impl<const ROWS: usize, const COLS: usize> Pass<ROWS, COLS> {
    /// The columns output row `y` computes (see [`Epilogue::columns`]): starting at a whole
    /// block of `lanes` outputs, to be stored from there and zeroed outside by
    /// [`Pass::zero_outside`].
    fn columns(&self, y: usize, epilogue: &Epilogue, lanes: usize) -> Range<usize> {
        let columns = epilogue.columns([self.h_out, self.w_out], y..y + 1);
        columns.start / lanes * lanes..columns.end
    }

    /// Zeros into output row `y` (of `rows`) of each channel in `out`, outside the columns it
    /// computes, over what the blocks of outputs wrote there.
    fn zero_outside(
        &self,
        out: &mut [&mut [Unwritten]],
        y: usize,
        rows: &Range<usize>,
        epilogue: &Epilogue,
    ) {
        if epilogue.active.is_none() {
            return;
        }
        let columns = epilogue.columns([self.h_out, self.w_out], y..y + 1);
        let at = (y - rows.start) * self.w_out;
        for channel in out.iter_mut() {
            zero_outside(&mut channel[at..at + self.w_out], columns.clone());
        }
    }

    /// Output rows `rows` of channels `group * CHANNELS ..` of one image into `out` (one slice of
    /// those rows per channel, fewer than [`CHANNELS`] for the last group when the channels are
    /// not a multiple of it), with `kernel`'s instructions (one of the plain loops').
    #[allow(clippy::too_many_arguments)] // one call site per kernel form
    fn channel_group(
        &self,
        kernel: Kernel,
        layout: &Planes,
        planes: &[f32],
        weights: &[[f32; CHANNELS]],
        epilogue: Epilogue,
        group: usize,
        rows: &Range<usize>,
        out: &mut [&mut [Unwritten]],
    ) {
        #[cfg(not(target_arch = "x86_64"))]
        let Kernel::Baseline = kernel;
        #[cfg(target_arch = "x86_64")]
        if kernel != Kernel::Baseline {
            assert!(avx2_fma(), "the CPU has no AVX2 and FMA");
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe {
                self.channel_group_avx2_fma(layout, planes, weights, epilogue, group, rows, out)
            };
            return;
        }
        #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
        {
            self.channel_group_relaxed(layout, planes, weights, epilogue, group, rows, out);
            return;
        }
        #[allow(unreachable_code)] // in the build with relaxed SIMD
        self.channel_group_with::<false>(layout, planes, weights, epilogue, group, rows, out);
    }

    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    #[target_feature(enable = "relaxed-simd")]
    #[allow(clippy::too_many_arguments)]
    fn channel_group_relaxed(
        &self,
        layout: &Planes,
        planes: &[f32],
        weights: &[[f32; CHANNELS]],
        epilogue: Epilogue,
        group: usize,
        rows: &Range<usize>,
        out: &mut [&mut [Unwritten]],
    ) {
        self.channel_group_with::<true>(layout, planes, weights, epilogue, group, rows, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    fn channel_group_avx2_fma(
        &self,
        layout: &Planes,
        planes: &[f32],
        weights: &[[f32; CHANNELS]],
        epilogue: Epilogue,
        group: usize,
        rows: &Range<usize>,
        out: &mut [&mut [Unwritten]],
    ) {
        self.channel_group_with::<true>(layout, planes, weights, epilogue, group, rows, out);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn channel_group_with<const FMA: bool>(
        &self,
        layout: &Planes,
        planes: &[f32],
        weights: &[[f32; CHANNELS]],
        epilogue: Epilogue,
        group: usize,
        rows: &Range<usize>,
        out: &mut [&mut [Unwritten]],
    ) {
        let plane = layout.plane();
        let (in_channels, row_len) = (layout.channels, layout.row);
        let (w_out, row_step) = (self.w_out, self.row_step);
        let start: [f32; CHANNELS] = std::array::from_fn(|c| epilogue.bias(group * CHANNELS + c));
        // Each tap's offset from the first input of a row of outputs, in channel 0.
        let offsets: [[usize; COLS]; ROWS] = self.taps.map(|row| {
            row.map(|tap| tap.plane * in_channels * plane + tap.row * row_len + tap.col)
        });
        for y in rows.clone() {
            for x0 in self.columns(y, &epilogue, LANES).step_by(LANES) {
                let mut acc = [[0.0f32; LANES]; CHANNELS];
                for (c, row) in acc.iter_mut().enumerate() {
                    *row = [start[c]; LANES];
                }
                let first = row_step * y * row_len + x0;
                for ci in 0..in_channels {
                    let channel = &planes[ci * plane + first..];
                    for (r, row) in offsets.iter().enumerate() {
                        for (k, &offset) in row.iter().enumerate() {
                            let inputs: &[f32; LANES] =
                                channel[offset..offset + LANES].try_into().unwrap();
                            let w = &weights[(ci * ROWS + r) * COLS + k];
                            madd_block::<FMA>(&mut acc, w, inputs);
                        }
                    }
                }
                let n = LANES.min(w_out - x0);
                let at = (y - rows.start) * w_out + x0;
                for (out, values) in out.iter_mut().zip(&acc) {
                    store_lanes(&mut out[at..at + n], values, epilogue);
                }
            }
            self.zero_outside(out, y, rows, &epilogue);
        }
    }
}
