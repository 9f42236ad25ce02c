//! The direct kernel: every tap of the kernel reads eight consecutive outputs' inputs with one
//! contiguous load and four output channels accumulate in registers.
//!
//! The input is zero-padded by one pixel and split by column phase (one plane at stride 1, even
//! and odd columns at stride 2), so each tap is a fixed offset into one plane. The same loop,
//! with other tap tables, computes the input gradient of a stride-2 convolution: each of the
//! four parities of the gradient's pixels is a small stride-1 correlation of the output
//! gradient with the kernel taps that reach it.

use super::{CHANNELS, LANES, Shape4, output_side, per_image};

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
    bias: Option<&[f32]>,
    stride: usize,
) -> Vec<f32> {
    let [batch, c_in, height, width] = shape;
    let (h_out, w_out) = (output_side(height, stride), output_side(width, stride));
    let planes = Planes::new(shape, stride, w_out);
    // Tap (kh, kw) of output column x reads padded column stride x + kw: element x + kw / stride
    // of plane kw % stride.
    let taps: Vec<Tap> = (0..9)
        .map(|k| Tap {
            plane: (k % 3) % stride,
            row: k / 3,
            col: (k % 3) / stride,
        })
        .collect();
    let pass = Pass {
        taps: &taps,
        row_step: stride,
        h_out,
        w_out,
    };
    let packed = pack_weights(c_out, c_in * 9, |o, k| weight[o * c_in * 9 + k]);
    let image_out = c_out * h_out * w_out;
    let mut out = vec![0.0; batch * image_out];
    per_image(x, c_in * height * width, &mut out, image_out, |x, out| {
        let padded = planes.fill(x);
        for (group, out) in out.chunks_mut(CHANNELS * h_out * w_out).enumerate() {
            pass.channel_group(&planes, &padded, &packed[group], bias, group, out);
        }
    });
    out
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
    // (kernel index, offset from y to the gradient row) of the taps reaching each parity; the
    // gradient is padded by one, so offset d is padded row y + 1 + d.
    let reaching = |parity: usize| -> &'static [(usize, usize)] {
        if parity == 0 {
            &[(1, 0)]
        } else {
            &[(0, 1), (2, 0)]
        }
    };
    let image_in = c_in * height * width;
    let mut out = vec![0.0; batch * image_in];
    let phases: Vec<_> = [(0, 0), (0, 1), (1, 0), (1, 1)]
        .into_iter()
        .map(|(pi, pj)| {
            let (rows, cols) = ((height - pi).div_ceil(2), (width - pj).div_ceil(2));
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
            let packed = pack_weights(c_in, c_out * n, |ci, k| {
                let (co, t) = (k / n, k % n);
                weight[(co * c_in + ci) * 9 + kernel_taps[t]]
            });
            (pi, pj, rows, cols, taps, packed)
        })
        .collect();
    let planes = Planes::new(grad_shape, 1, w_out.next_multiple_of(LANES));
    per_image(grad, c_out * h_out * w_out, &mut out, image_in, |g, out| {
        let padded = planes.fill(g);
        for (pi, pj, rows, cols, taps, packed) in &phases {
            let pass = Pass {
                taps,
                row_step: 1,
                h_out: *rows,
                w_out: *cols,
            };
            let mut part = vec![0.0; c_in.next_multiple_of(CHANNELS) * rows * cols];
            for (group, part) in part.chunks_mut(CHANNELS * rows * cols).enumerate() {
                pass.channel_group(&planes, &padded, &packed[group], None, group, part);
            }
            for ci in 0..c_in {
                for y in 0..*rows {
                    let src = &part[(ci * rows + y) * cols..][..*cols];
                    let dst = &mut out[(ci * height + 2 * y + pi) * width..][..width];
                    for (x, &value) in src.iter().enumerate() {
                        dst[2 * x + pj] = value;
                    }
                }
            }
        }
    });
    out
}

/// Weights regrouped per block of [`CHANNELS`] output channels as `[taps][CHANNELS]` (channels
/// past `c_out` zero), so one tap's weights for the block are adjacent; `weight(o, k)` is tap
/// `k` (input channel major) of output channel `o`.
fn pack_weights(
    c_out: usize,
    taps: usize,
    weight: impl Fn(usize, usize) -> f32,
) -> Vec<Vec<[f32; CHANNELS]>> {
    (0..c_out.div_ceil(CHANNELS))
        .map(|group| {
            (0..taps)
                .map(|k| {
                    let mut block = [0.0; CHANNELS];
                    for (c, value) in block.iter_mut().enumerate() {
                        let o = group * CHANNELS + c;
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

    fn fill(&self, image: &[f32]) -> Vec<f32> {
        let plane = self.plane();
        let mut planes = vec![0.0; self.stride * self.channels * plane];
        for phase in 0..self.stride {
            for c in 0..self.channels {
                let dst = &mut planes[(phase * self.channels + c) * plane..][..plane];
                let src = &image[c * self.height * self.width..][..self.height * self.width];
                for (y, src_row) in src.chunks_exact(self.width).enumerate() {
                    let dst_row = &mut dst[(y + 1) * self.row..][..self.row];
                    // Padded column p + stride j is input column p + stride j - 1.
                    for (j, value) in dst_row.iter_mut().enumerate() {
                        let column = phase + self.stride * j;
                        if (1..=self.width).contains(&column) {
                            *value = src_row[column - 1];
                        }
                    }
                }
            }
        }
        planes
    }
}

/// One convolution pass over padded planes: output row `y` reads padded row
/// `row_step * y + tap.row`.
struct Pass<'a> {
    taps: &'a [Tap],
    row_step: usize,
    h_out: usize,
    w_out: usize,
}

impl Pass<'_> {
    /// Output channels `group * CHANNELS ..` of one image into `out` (`[CHANNELS, h_out, w_out]`,
    /// shorter for the last group when the channels are not a multiple of [`CHANNELS`]).
    fn channel_group(
        &self,
        layout: &Planes,
        planes: &[f32],
        weights: &[[f32; CHANNELS]],
        bias: Option<&[f32]>,
        group: usize,
        out: &mut [f32],
    ) {
        let plane = layout.plane();
        let channels = out.len() / (self.h_out * self.w_out);
        let start: [f32; CHANNELS] = std::array::from_fn(|c| {
            bias.and_then(|b| b.get(group * CHANNELS + c))
                .copied()
                .unwrap_or(0.0)
        });
        let taps = self.taps.len();
        for y in 0..self.h_out {
            for x0 in (0..self.w_out).step_by(LANES) {
                let mut acc = [[0.0f32; LANES]; CHANNELS];
                for (c, row) in acc.iter_mut().enumerate() {
                    *row = [start[c]; LANES];
                }
                for ci in 0..layout.channels {
                    for (t, tap) in self.taps.iter().enumerate() {
                        let base = (tap.plane * layout.channels + ci) * plane
                            + (self.row_step * y + tap.row) * layout.row
                            + x0
                            + tap.col;
                        let inputs: &[f32; LANES] = planes[base..base + LANES].try_into().unwrap();
                        let w = &weights[ci * taps + t];
                        for c in 0..CHANNELS {
                            for l in 0..LANES {
                                acc[c][l] += w[c] * inputs[l];
                            }
                        }
                    }
                }
                let n = LANES.min(self.w_out - x0);
                for (c, values) in acc.iter().enumerate().take(channels) {
                    let at = (c * self.h_out + y) * self.w_out + x0;
                    out[at..at + n].copy_from_slice(&values[..n]);
                }
            }
        }
    }
}
