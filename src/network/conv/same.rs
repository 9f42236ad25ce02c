//! Stride-1 convolutions with an odd square kernel, "same" zero padding and no bias (spatial
//! attention's fused 7x7 kernel) as a Burn operation.
//!
//! On flex both directions are [`conv_same_f32`], a direct loop over rows: with two input
//! channels and one output flex's general `conv2d` builds an im2col matrix of 98 values per
//! pixel (500 MB for a dense tile's map). The input gradient of such a convolution is the same
//! convolution of the output gradient by the kernel turned half a turn with its channel axes
//! swapped; Burn's own backward goes through a transposed convolution, several times slower for
//! these shapes (in wasm, a thirtieth of an explanation). Other backends keep Burn's.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::ops::ConvOptions;

use super::Unwritten;

/// Burn's options for a stride-1 convolution that keeps the size, for a `kernel`-wide kernel.
fn options(kernel: usize) -> ConvOptions<2> {
    let pad = kernel / 2;
    ConvOptions::new([1, 1], [pad, pad], [1, 1], 1)
}

fn kernel_side<B: Backend>(weight: &FloatTensor<B>) -> usize {
    weight.shape()[2]
}

/// Backend operations for a stride-1 "same" convolution without bias.
#[backend_extension(Autodiff, Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")))]
pub trait SameConvBackend: Backend {
    /// `conv2d` of `x` by `weight` `[C_out, C_in, k, k]` (k odd), stride 1, padding k / 2.
    #[fusion(default)]
    fn conv_same(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let options = options(kernel_side::<Self>(&weight));
        Self::conv2d(x, weight, None, options)
    }

    /// The gradient of [`SameConvBackend::conv_same`]'s output with respect to `x`.
    #[fusion(default)]
    fn conv_same_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let options = options(kernel_side::<Self>(&weight));
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }
}

impl SameConvBackend for Cube {}

impl SameConvBackend for Flex {
    fn conv_same(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        if !super::flex::all_f32([&x, &weight]) {
            let options = options(kernel_side::<Self>(&weight));
            return Flex::conv2d(x, weight, None, options);
        }
        flex_conv_same(x, weight)
    }

    fn conv_same_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if super::flex::all_f32([&x, &weight, &output_grad]) {
            Self::conv_same(output_grad, super::flex::flipped(weight))
        } else {
            let options = options(kernel_side::<Self>(&weight));
            Flex::conv2d_x_backward(x, weight, output_grad, options)
        }
    }
}

/// [`conv_same_f32`] of f32 flex tensors.
fn flex_conv_same(x: FloatTensor<Flex>, weight: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let shape @ [batch, _, height, width] = super::flex::shape(&x);
    let c_out = super::flex::shape(&weight)[0];
    let (x, weight) = (super::flex::slice(&x), super::flex::slice(&weight));
    let out = conv_same_f32(x, shape, weight, c_out);
    FloatTensor::<Flex>::from_data(TensorData::new(out, [batch, c_out, height, width]))
}

/// Output rows per task.
const BAND_ROWS: usize = 16;

/// Outputs along a row summed in registers at once: four vectors (AVX2 natively, simd128 in
/// wasm), so that four independent chains of multiply-adds hide each one's latency.
pub(crate) const CHUNK: usize = 4 * if cfg!(target_arch = "wasm32") { 4 } else { 8 };

/// The input zero-padded by the kernel's reach on every side, each row long enough for whole
/// chunks of outputs: `[batch][c_in][height + 2 pad][row]`.
struct Padded {
    values: Vec<f32>,
    rows: usize,
    row: usize,
}

impl Padded {
    fn new(x: &[f32], [batch, c_in, height, width]: [usize; 4], pad: usize) -> Self {
        let (rows, row) = (height + 2 * pad, width.next_multiple_of(CHUNK) + 2 * pad);
        let mut values = vec![0.0; batch * c_in * rows * row];
        for (plane, padded) in x
            .chunks_exact(height * width)
            .zip(values.chunks_exact_mut(rows * row))
        {
            for (src, dst) in plane
                .chunks_exact(width)
                .zip(padded[pad * row..].chunks_exact_mut(row))
            {
                dst[pad..pad + width].copy_from_slice(src);
            }
        }
        Self { values, rows, row }
    }
}

/// `x` `[batch, c_in, height, width]` convolved with `weight` `[c_out, c_in, k, k]` (k odd),
/// stride 1, zero padding k / 2, no bias: `[batch, c_out, height, width]`.
///
/// # Panics
/// If the slices do not match the shapes or the kernel is not square with an odd side.
pub fn conv_same_f32(
    x: &[f32],
    shape @ [batch, c_in, height, width]: [usize; 4],
    weight: &[f32],
    c_out: usize,
) -> Vec<f32> {
    assert_eq!(
        x.len(),
        batch * c_in * height * width,
        "input does not match its shape"
    );
    let taps = weight.len() / (c_out * c_in).max(1);
    let k = taps.isqrt();
    assert!(
        k * k == taps && k % 2 == 1 && weight.len() == c_out * c_in * taps,
        "weight is not [{c_out}, {c_in}, k, k] with k odd"
    );
    let plane = height * width;
    let padded = Padded::new(x, shape, k / 2);
    let mut out = super::unwritten(batch * c_out * plane);
    let mut bands = Vec::new();
    for (index, plane_out) in out.chunks_mut(plane).enumerate() {
        for (band, rows) in plane_out.chunks_mut(BAND_ROWS * width).enumerate() {
            bands.push((index / c_out, index % c_out, band * BAND_ROWS, rows));
        }
    }
    super::per_band(bands, |_, (image, o, first_row, rows)| {
        let band = Band {
            padded: &padded,
            channels: &padded.values[image * c_in * padded.rows * padded.row..]
                [..c_in * padded.rows * padded.row],
            kernels: &weight[o * c_in * taps..][..c_in * taps],
            k,
            width,
            first_row,
        };
        band.run(rows);
    });
    // SAFETY: the bands cover every plane, and `Band::rows` writes each of their rows whole.
    unsafe { super::written(out) }
}

/// One task's rows of one output channel of one image.
struct Band<'a> {
    padded: &'a Padded,
    /// The image's padded input channels.
    channels: &'a [f32],
    /// The output channel's `[c_in][k][k]` kernel.
    kernels: &'a [f32],
    k: usize,
    width: usize,
    first_row: usize,
}

impl Band<'_> {
    /// Natively the loop is compiled a second time for AVX2 with fused multiply-add where the
    /// CPU has them (the x86-64 baseline has four lanes and no fused multiply-add).
    fn run(&self, out: &mut [Unwritten]) {
        #[cfg(target_arch = "x86_64")]
        if super::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked).
            unsafe { self.rows_avx2_fma(out) };
            return;
        }
        self.rows::<false>(out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn rows_avx2_fma(&self, out: &mut [Unwritten]) {
        self.rows::<true>(out);
    }

    /// Each chunk of outputs sums every tap's shifted input row in registers, then is stored
    /// once. The taps are one flat list of offsets and weights: with the loops over channels
    /// and kernel rows around it, LLVM left the sums scalar.
    #[inline(always)]
    fn rows<const FMA: bool>(&self, out: &mut [Unwritten]) {
        let (k, width, row_len) = (self.k, self.width, self.padded.row);
        let plane = self.padded.rows * row_len;
        let taps: Vec<(usize, f32)> = self
            .kernels
            .chunks_exact(k * k)
            .enumerate()
            .flat_map(|(c, kernel)| {
                kernel
                    .iter()
                    .enumerate()
                    .map(move |(t, &w)| (c * plane + (t / k) * row_len + t % k, w))
            })
            .collect();
        for (r, out) in out.chunks_exact_mut(width).enumerate() {
            // Padded row y + ky is input row y + ky - pad.
            let first = (self.first_row + r) * row_len;
            for x0 in (0..width).step_by(CHUNK) {
                let acc = sum_taps::<FMA>(self.channels, first + x0, &taps);
                let n = CHUNK.min(width - x0);
                out[x0..x0 + n].write_copy_of_slice(&acc[..n]);
            }
        }
    }
}

/// The [`CHUNK`] outputs from `start` of a convolution along rows: the sum over `taps`
/// (offsets from `start` into `values`, and weights) of each tap's shifted chunk, in registers.
#[inline(always)]
pub(crate) fn sum_taps<const FMA: bool>(
    values: &[f32],
    start: usize,
    taps: &[(usize, f32)],
) -> [f32; CHUNK] {
    let mut acc = [0.0f32; CHUNK];
    for &(offset, w) in taps {
        let shifted = &values[start + offset..][..CHUNK];
        madd_chunk::<FMA>(&mut acc, w, shifted.try_into().expect("a chunk"));
    }
    acc
}

/// `acc[l] += w * x[l]`, as an indexed loop: written with iterators, LLVM left the sums
/// scalar.
#[inline(always)]
fn madd_chunk<const FMA: bool>(acc: &mut [f32; CHUNK], w: f32, x: &[f32; CHUNK]) {
    for l in 0..CHUNK {
        acc[l] = super::madd::<FMA>(acc[l], w, x[l]);
    }
}

/// The backward of [`SameConvBackend::conv_same`]; its parents are the input and the weight.
#[derive(Debug)]
struct SameConvBackward;

impl<B: Backend + SameConvBackend> Backward<B, 2> for SameConvBackward {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state.0);
        let weight: FloatTensor<B> = checkpointer.retrieve_node_output(ops.state.1);
        if let Some(node) = node_weight {
            let options = options(kernel_side::<B>(&weight));
            let dw = B::conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options);
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::conv_same_x_backward(x, weight, grad));
        }
    }
}

impl<B: Backend + SameConvBackend, C: CheckpointStrategy> SameConvBackend for Autodiff<B, C> {
    fn conv_same(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match SameConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
                prep.finish(
                    state,
                    B::conv_same(x.into_primitive(), weight.into_primitive()),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::conv_same(x.into_primitive(), weight.into_primitive()))
            }
        }
    }
}

/// `x` `[B, C_in, H, W]` convolved with `weight` `[C_out, C_in, k, k]` (k odd), stride 1, zero
/// padding k / 2, no bias: `[B, C_out, H, W]`.
pub fn conv_same(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::conv_same(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::conv::tests::{assert_close, values};
    use burn::tensor::Distribution;

    #[test]
    fn the_row_kernel_is_burns_conv2d() {
        // Sides smaller than the kernel, a batch of two, 3x3 to 7x7.
        let device = Device::flex();
        for (shape, c_out, k) in [
            ([2, 2, 9, 11], 1, 7),
            ([1, 3, 5, 4], 2, 7),
            ([1, 2, 6, 13], 3, 3),
            ([1, 1, 40, 33], 1, 5),
        ] {
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<4>::random(
                [c_out, shape[1], k, k],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let expected = burn::tensor::module::conv2d(x.clone(), w.clone(), None, options(k));
            let ours = conv_same_f32(&values(x), shape, &values(w), c_out);
            assert_close(&ours, &values(expected), &format!("{shape:?} by {k}x{k}"));
        }
    }

    #[test]
    fn values_and_gradients_are_those_of_burns_conv2d() {
        let device = Device::flex().autodiff();
        let random =
            |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (x, weight, mix) = (
            random([2, 2, 9, 11]),
            random([3, 2, 7, 7]),
            random([2, 3, 9, 11]),
        );
        let run = |f: &dyn Fn(Tensor<4>, Tensor<4>) -> Tensor<4>| {
            let (x, weight) = (x.clone().require_grad(), weight.clone().require_grad());
            let out = f(x.clone(), weight.clone());
            let grads = (out.clone() * mix.clone()).sum().backward();
            [
                out.inner(),
                x.grad(&grads).unwrap(),
                weight.grad(&grads).unwrap(),
            ]
            .map(values)
        };
        let ours = run(&conv_same);
        let burns = run(&|x, w| burn::tensor::module::conv2d(x, w, None, options(7)));
        for (what, (o, b)) in ["output", "dx", "dweight"]
            .iter()
            .zip(ours.iter().zip(&burns))
        {
            assert_close(o, b, what);
        }
    }
}
