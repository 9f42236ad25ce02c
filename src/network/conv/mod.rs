//! 3x3 convolutions for the CPU backend, as a Burn operation.
//!
//! CELNet is made of 3x3 convolutions with 3 to 64 channels on maps of 24 to 1,152 px. At these
//! channel counts flex's general path (a transposed copy of the input, an im2col matrix, a GEMM
//! with 16 to 64 rows and a scatter of its result) spends most of its time moving data. Two
//! kernels: Winograd's minimal filtering ([`winograd`]: F(4x4, 3x3), 4x fewer
//! multiplications) for stride 1 from 8 input channels, and a direct kernel ([`direct`]) for
//! the rest. Each is written as plain loops that
//! LLVM turns into SIMD (simd128 in wasm, with relaxed SIMD's multiply-add in the build that
//! has it; natively AVX2 with fused multiply-add where the CPU has them, SSE otherwise) and,
//! natively, a third time with AVX-512 intrinsics where the CPU has AVX-512 F (sixteen output
//! channels by sixteen outputs or tiles, [`Kernel`]). Natively they run images, bands of rows
//! and groups of output channels in parallel, so one large image (a tile of the dense pass)
//! uses every core. Their outputs are never zeroed first: each is written once, with the bias
//! added and, where the model asks ([`conv3x3_relu`]), the ReLU applied as it is stored.
//!
//! [`conv3x3`] is the operation the model calls: a backend extension that runs these kernels on
//! flex (the forward pass, and the input gradient for explanations), and Burn's own `conv2d`
//! everywhere else.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use std::mem::MaybeUninit;
use std::ops::Range;

use crate::network::active_area::ActiveArea;

mod direct;
mod same;
mod winograd;

pub use same::conv_same;
pub(crate) use same::{CHUNK, sum_taps};

/// Output channels computed together (four accumulator rows of [`LANES`] values).
const CHANNELS: usize = 4;
/// Outputs (pixels or tiles) computed together along a row: two vectors in wasm (simd128), two
/// AVX2 vectors natively, so that the eight accumulators hide the latency of a multiply-add
/// (with one vector each, four dependent chains left half of the FMA units idle).
const LANES: usize = if cfg!(target_arch = "wasm32") { 8 } else { 16 };

/// Shape of a convolution's input, `[batch, channels, height, width]`.
pub type Shape4 = [usize; 4];

/// What the kernels do to each output before storing it: add its channel's bias, then, for a
/// ReLU fused into the convolution, clamp it at zero (a pass over the map saved); and which
/// outputs they compute.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// One value per output channel.
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
    /// Where a dense pass computes: outside it the outputs are zero (every output where `None`).
    pub active: Option<&'a ActiveArea>,
}

impl Epilogue<'_> {
    /// The columns of an `[height, width]` output that its rows `rows` compute (at least; the
    /// kernels round them out to whole blocks).
    #[inline]
    fn columns(&self, size @ [_, width]: [usize; 2], rows: Range<usize>) -> Range<usize> {
        match self.active {
            Some(area) => area.columns(size, rows),
            None => 0..width,
        }
    }

    /// Output channel `channel`'s bias (zero past the channels, for padded groups).
    #[inline(always)]
    fn bias(&self, channel: usize) -> f32 {
        self.bias
            .and_then(|b| b.get(channel))
            .copied()
            .unwrap_or(0.0)
    }

    /// The ReLU where fused.
    #[inline(always)]
    fn activate(&self, value: f32) -> f32 {
        match self.relu {
            // A comparison and a select, which vectorise.
            true => {
                if value > 0.0 {
                    value
                } else {
                    0.0
                }
            }
            false => value,
        }
    }

    /// [`Epilogue::activate`] on a vector of four outputs in wasm: `pmax(0, v)` is `v` where
    /// `v > 0`, else 0 (NaN too).
    #[cfg(target_arch = "wasm32")]
    #[inline(always)]
    fn activate_v128(&self, value: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
        use core::arch::wasm32::{f32x4_pmax, f32x4_splat};
        if self.relu {
            f32x4_pmax(f32x4_splat(0.0), value)
        } else {
            value
        }
    }
}

/// Output side of a 3x3 convolution with padding 1.
pub fn output_side(side: usize, stride: usize) -> usize {
    (side - 1) / stride + 1
}

/// `x` `[batch, c_in, h, w]` (row-major) convolved with `weight` `[c_out, c_in, 3, 3]`, zero
/// padding 1, `stride` 1 or 2, plus `bias` `[c_out]`: `[batch, c_out, h_out, w_out]` row-major.
/// Winograd's F(4x4, 3x3) at stride 1 from 8 input channels, the direct kernel otherwise.
///
/// # Panics
/// If the slices do not match the shapes or `stride` is not 1 or 2.
pub fn conv3x3_f32(
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    bias: Option<&[f32]>,
    stride: usize,
) -> Vec<f32> {
    conv3x3_with(
        x,
        shape,
        weight,
        c_out,
        Epilogue {
            bias,
            ..Epilogue::default()
        },
        stride,
    )
}

/// [`conv3x3_f32`] with `epilogue` applied to each output (a ReLU fused where it asks).
///
/// # Panics
/// As [`conv3x3_f32`].
pub fn conv3x3_with(
    x: &[f32],
    shape: Shape4,
    weight: &[f32],
    c_out: usize,
    epilogue: Epilogue,
    stride: usize,
) -> Vec<f32> {
    let [batch, c_in, height, width] = shape;
    assert!(stride == 1 || stride == 2, "stride {stride} is not 1 or 2");
    assert_eq!(
        x.len(),
        batch * c_in * height * width,
        "input does not match its shape"
    );
    assert_eq!(
        weight.len(),
        c_out * c_in * 9,
        "weight does not match its shape"
    );
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), c_out, "bias does not match the output channels");
    }
    // With few input channels the transforms cost more than the multiplications they save.
    if stride == 1 && c_in >= 8 {
        winograd::winograd3x3(x, shape, weight, c_out, epilogue)
    } else {
        direct::direct3x3(x, shape, weight, c_out, epilogue, stride)
    }
}

/// The kernel of a stride-1 input gradient: `weight` `[c_out, c_in, k, k]` with its channel
/// axes swapped and each k x k kernel turned by half a turn, `[c_in, c_out, k, k]` row-major.
/// One pass over the slice, where swapping and flipping views left a strided tensor to copy
/// element by element.
pub fn flipped_transposed(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    assert!(
        c_out * c_in > 0 && weight.len().is_multiple_of(c_out * c_in),
        "weight does not match its channels"
    );
    let taps = weight.len() / (c_out * c_in);
    let mut out = vec![0.0; weight.len()];
    for (o, per_output) in weight.chunks_exact(c_in * taps).enumerate() {
        for (i, kernel) in per_output.chunks_exact(taps).enumerate() {
            let turned = &mut out[(i * c_out + o) * taps..][..taps];
            for (k, &w) in kernel.iter().enumerate() {
                turned[taps - 1 - k] = w;
            }
        }
    }
    out
}

/// Output values not yet written. The kernels write each of their outputs once, so they are
/// not zeroed first: a dense tile's maps are tens of megabytes each, and zeroing one took as
/// long as a tenth of the convolution that then overwrote it.
pub(crate) type Unwritten = MaybeUninit<f32>;

/// Room for `len` outputs, to be written by a kernel before [`written`].
pub(crate) fn unwritten(len: usize) -> Box<[Unwritten]> {
    Box::new_uninit_slice(len)
}

/// Zeros into `out` (outputs outside a dense pass's [`ActiveArea`]).
pub(crate) fn zero(out: &mut [Unwritten]) {
    out.fill(MaybeUninit::new(0.0));
}

/// Zeros into one output row's columns outside `columns` (clipped to the row).
pub(crate) fn zero_outside(row: &mut [Unwritten], columns: Range<usize>) {
    let end = columns.end.min(row.len());
    let start = columns.start.min(end);
    let (before, rest) = row.split_at_mut(start);
    zero(before);
    zero(&mut rest[end - start..]);
}

/// The outputs in `out`, every one of which a kernel has written.
///
/// # Safety
/// Every value of `out` must have been written.
pub(crate) unsafe fn written(out: Box<[Unwritten]>) -> Vec<f32> {
    // SAFETY: the caller guarantees that every value is initialised.
    unsafe { out.assume_init() }.into_vec()
}

/// Runs `f` on each image's input and output, in parallel natively.
fn per_image<T: Send>(
    x: &[f32],
    image_in: usize,
    out: &mut [T],
    image_out: usize,
    f: impl Fn(&[f32], &mut [T]) + Sync + Send,
) {
    let run = |(image, out): (usize, &mut [T])| f(&x[image * image_in..][..image_in], out);
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(image_out).enumerate().for_each(run);
    }
    #[cfg(target_arch = "wasm32")]
    out.chunks_mut(image_out).enumerate().for_each(run);
}

/// One image's output (`[channels][plane]`) cut into bands of `band` values of every channel's
/// plane (whole rows): band b is each channel's values `b * band ..`, so one thread can compute
/// every channel for its rows.
pub(crate) fn channel_bands<T>(out: &mut [T], plane: usize, band: usize) -> Vec<Vec<&mut [T]>> {
    let mut bands: Vec<Vec<&mut [T]>> = (0..plane.div_ceil(band)).map(|_| Vec::new()).collect();
    for channel in out.chunks_mut(plane) {
        for (index, rows) in channel.chunks_mut(band).enumerate() {
            bands[index].push(rows);
        }
    }
    bands
}

/// Runs `f` on each band (a part of one image's work) with its index, in parallel natively.
pub(crate) fn per_band<T: Send>(bands: Vec<T>, f: impl Fn(usize, T) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        bands
            .into_par_iter()
            .enumerate()
            .for_each(|(index, band)| f(index, band));
    }
    #[cfg(target_arch = "wasm32")]
    bands
        .into_iter()
        .enumerate()
        .for_each(|(index, band)| f(index, band));
}

/// How the kernels' inner loops are compiled: the instruction sets they use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Sixteen output channels by sixteen outputs (direct) or tiles (Winograd's F(4x4, 3x3)) in
    /// AVX-512 registers, written with intrinsics (`winograd::avx512`, `direct::avx512`).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The plain loops compiled for AVX2 with fused multiply-add.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// The plain loops for the build's baseline (in wasm with relaxed SIMD's multiply-add where
    /// the build has it).
    Baseline,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(crate) fn best() -> Self {
        Self::available()[0]
    }

    /// The fastest of the plain loops (four output channels at a time) this CPU runs.
    fn best_plain() -> Self {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            return Self::Avx2Fma;
        }
        Self::Baseline
    }

    /// The kernels this CPU runs, fastest first.
    pub(crate) fn available() -> Vec<Self> {
        [
            #[cfg(target_arch = "x86_64")]
            avx512().then_some(Self::Avx512),
            #[cfg(target_arch = "x86_64")]
            avx2_fma().then_some(Self::Avx2Fma),
            Some(Self::Baseline),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Whether the CPU has AVX-512 F, for which the kernels' inner loops are written a third time.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// Whether the CPU has AVX2 and fused multiply-add: the kernels' loops are compiled a second
/// time for them (eight lanes per instruction and one instruction per multiply-add, where the
/// x86-64 baseline has four lanes and separate multiplications and additions).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// `acc + w * x`, fused when `FMA` (only in code compiled for a CPU with fused multiply-add:
/// elsewhere `mul_add` is a slow library call).
#[inline(always)]
fn madd<const FMA: bool>(acc: f32, w: f32, x: f32) -> f32 {
    if FMA { w.mul_add(x, acc) } else { acc + w * x }
}

/// `values` after `epilogue` (without its bias, already summed) into `out` (at most [`LANES`]
/// outputs). A whole row is stored as vectors in wasm, where LLVM made a copy of it through a
/// buffer, and a copy in wasm is a call out of the module.
#[inline(always)]
fn store_lanes(out: &mut [Unwritten], values: &[f32; LANES], epilogue: Epilogue) {
    #[cfg(target_arch = "wasm32")]
    if let Ok(out) = <&mut [Unwritten; LANES]>::try_from(&mut *out) {
        use core::arch::wasm32::{v128, v128_load, v128_store};
        for (v, target) in out.as_chunks_mut::<4>().0.iter_mut().enumerate() {
            // SAFETY: four floats read inside `values`, four written inside `out` (wasm loads
            // and stores need no alignment).
            unsafe {
                let value = epilogue.activate_v128(v128_load(values[4 * v..].as_ptr().cast()));
                v128_store(target.as_mut_ptr().cast::<v128>(), value);
            }
        }
        return;
    }
    let values = values.map(|v| epilogue.activate(v));
    let n = out.len();
    out.write_copy_of_slice(&values[..n]);
}

/// `acc[c][l] += w[c] * x[l]`: one input's contribution to [`CHANNELS`] output channels at
/// [`LANES`] outputs, the inner step of both kernels; fused when `FMA` (natively in code
/// compiled for AVX2 and FMA, in wasm in code compiled for relaxed SIMD).
#[inline(always)]
fn madd_block<const FMA: bool>(
    acc: &mut [[f32; LANES]; CHANNELS],
    w: &[f32; CHANNELS],
    x: &[f32; LANES],
) {
    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    if FMA {
        relaxed::madd_block(acc, w, x);
        return;
    }
    for c in 0..CHANNELS {
        for l in 0..LANES {
            acc[c][l] = madd::<FMA>(acc[c][l], w[c], x[l]);
        }
    }
}

/// The wasm build for browsers with relaxed SIMD (the `relaxed-simd` feature): LLVM does not
/// turn `a * b + c` into relaxed SIMD's multiply-add by itself (its rounding may differ from one
/// machine to the next), so the kernels' inner step calls it, which the engine runs as one
/// fused multiply-add where the CPU has one. Only the kernels are compiled for it; a browser
/// without relaxed SIMD cannot load this build at all, and gets the other.
#[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
mod relaxed {
    use super::{CHANNELS, LANES};
    use core::arch::wasm32::{f32x4_relaxed_madd, v128, v128_load, v128_load32_splat, v128_store};

    const VECTORS: usize = LANES / 4;

    #[inline(always)]
    pub(super) fn madd_block(
        acc: &mut [[f32; LANES]; CHANNELS],
        w: &[f32; CHANNELS],
        x: &[f32; LANES],
    ) {
        // SAFETY: every pointer is to four floats inside the arrays (wasm loads and stores
        // need no alignment).
        unsafe {
            let inputs: [v128; VECTORS] =
                std::array::from_fn(|v| v128_load(x.as_ptr().add(4 * v).cast()));
            for (row, weight) in acc.iter_mut().zip(w) {
                // One load that fills the four lanes, where a splat of a loaded value takes a
                // shuffle as well.
                let weight = v128_load32_splat((weight as *const f32).cast());
                for (v, input) in inputs.iter().enumerate() {
                    let at = row.as_mut_ptr().add(4 * v).cast::<v128>();
                    v128_store(at, f32x4_relaxed_madd(weight, *input, v128_load(at)));
                }
            }
        }
    }
}

/// Burn's options for a 3x3 convolution with padding 1.
fn options(stride: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [1, 1], [1, 1], 1)
}

/// Backend operations for 3x3 convolutions with padding 1.
#[backend_extension(Autodiff, Cube, Flex, Fusion: cfg(not(target_arch = "wasm32")))]
pub trait Conv3x3Backend: Backend {
    /// `conv2d` with a 3x3 kernel, padding 1, the given stride and a bias.
    #[fusion(default)]
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options(stride))
    }

    /// `relu(conv3x3(x, weight, bias, stride))`, for inference (natively on flex the ReLU is
    /// applied as each output is stored).
    #[fusion(default)]
    fn conv3x3_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        Self::relu(Self::conv3x3(x, weight, bias, stride))
    }

    /// [`Conv3x3Backend::conv3x3`], and its ReLU where `relu`, with every output outside
    /// `active` zero: the dense pass's convolutions (inference), which flex computes only
    /// inside the area.
    #[fusion(default)]
    fn conv3x3_active(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        relu: bool,
        active: ActiveArea,
    ) -> FloatTensor<Self> {
        conv3x3_masked::<Self>(x, weight, bias, stride, relu, &active)
    }

    /// The gradient of [`Conv3x3Backend::conv3x3`]'s output with respect to `x`.
    #[fusion(default)]
    fn conv3x3_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options(stride))
    }
}

impl Conv3x3Backend for Cube {}

/// Whether flex runs [`conv3x3_f32`]: in wasm, and natively where the CPU has AVX2 and FMA, for
/// which the kernels are compiled a second time. Elsewhere flex keeps its own path (a GEMM over
/// im2col tiles); `cargo bench --bench engine -- conv3x3` compares them.
fn flex_direct() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx2_fma();
    #[cfg(not(target_arch = "x86_64"))]
    cfg!(target_arch = "wasm32")
}

impl Conv3x3Backend for Flex {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        if flex_direct() {
            flex::conv3x3(x, weight, Some(bias), stride, false)
        } else {
            Flex::conv2d(x, weight, Some(bias), options(stride))
        }
    }

    fn conv3x3_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        if flex_direct() {
            flex::conv3x3(x, weight, Some(bias), stride, true)
        } else {
            Flex::relu(Flex::conv2d(x, weight, Some(bias), options(stride)))
        }
    }

    fn conv3x3_active(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        relu: bool,
        active: ActiveArea,
    ) -> FloatTensor<Self> {
        if flex_direct() {
            flex::conv3x3_in(x, weight, Some(bias), stride, relu, Some(&active))
        } else {
            conv3x3_masked::<Flex>(x, weight, bias, stride, relu, &active)
        }
    }

    fn conv3x3_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        if flex_direct() {
            flex::conv3x3_x_backward(x, weight, output_grad, stride)
        } else {
            Flex::conv2d_x_backward(x, weight, output_grad, options(stride))
        }
    }
}

/// The whole map's convolution (and ReLU where `relu`), then zero outside `area`: the dense
/// pass's convolution where no kernel computes only inside the area.
fn conv3x3_masked<B: Conv3x3Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    stride: usize,
    relu: bool,
    area: &ActiveArea,
) -> FloatTensor<B> {
    let out = B::conv3x3(x, weight, bias, stride);
    masked::<B>(if relu { B::relu(out) } else { out }, area)
}

/// `out` `[B, C, H, W]` with every value outside `area` zero, for backends that compute whole
/// maps.
fn masked<B: Backend>(out: FloatTensor<B>, area: &ActiveArea) -> FloatTensor<B> {
    let shape = out.shape();
    let size = [shape[2], shape[3]];
    let mask = TensorData::new(area.mask(size), [1, 1, size[0], size[1]]);
    let mask = B::float_from_data(mask, &out.device());
    B::float_mul(out, mask)
}

/// flex tensors to slices and back (also for the other flex kernels of [`crate::network`]).
pub(crate) mod flex {
    use super::ActiveArea;
    use burn::backend::Flex;
    use burn::backend::ops::{ActivationOps, ModuleOps};
    use burn::backend::tensor::FloatTensor;
    use burn::tensor::{DType, TensorData};

    /// The input gradient of [`conv3x3`]. At stride 1 it is the same convolution of the output
    /// gradient with the kernel flipped and its channel axes swapped; at stride 2 the direct
    /// kernel computes each parity of the input's pixels.
    pub fn conv3x3_x_backward(
        x: FloatTensor<Flex>,
        weight: FloatTensor<Flex>,
        output_grad: FloatTensor<Flex>,
        stride: usize,
    ) -> FloatTensor<Flex> {
        match (stride, all_f32([&x, &weight, &output_grad])) {
            (1, true) => conv3x3(output_grad, flipped(weight), None, 1, false),
            (2, true) => {
                let (weight, grad) = (weight.to_contiguous(), output_grad.to_contiguous());
                let input @ [_, _, height, width] = shape(&x);
                let out = super::direct::input_gradient_stride2(
                    slice(&grad),
                    shape(&grad),
                    slice(&weight),
                    [height, width],
                );
                FloatTensor::<Flex>::from_data(TensorData::new(out, input))
            }
            _ => Flex::conv2d_x_backward(x, weight, output_grad, super::options(stride)),
        }
    }

    /// [`super::flipped_transposed`] of an f32 weight tensor.
    pub fn flipped(weight: FloatTensor<Flex>) -> FloatTensor<Flex> {
        let weight = weight.to_contiguous();
        let [c_out, c_in, kh, kw] = shape(&weight);
        let flipped = super::flipped_transposed(slice(&weight), c_out, c_in);
        FloatTensor::<Flex>::from_data(TensorData::new(flipped, [c_in, c_out, kh, kw]))
    }

    pub fn all_f32<'a>(tensors: impl IntoIterator<Item = &'a FloatTensor<Flex>>) -> bool {
        tensors.into_iter().all(|t| t.dtype() == DType::F32)
    }

    pub fn shape(t: &FloatTensor<Flex>) -> [usize; 4] {
        t.layout().shape()[..].try_into().expect("a 4-d tensor")
    }

    pub fn slice(t: &FloatTensor<Flex>) -> &[f32] {
        t.as_slice::<f32>().expect("a contiguous f32 tensor")
    }

    /// The convolution, and its ReLU if `relu`.
    pub fn conv3x3(
        x: FloatTensor<Flex>,
        weight: FloatTensor<Flex>,
        bias: Option<FloatTensor<Flex>>,
        stride: usize,
        relu: bool,
    ) -> FloatTensor<Flex> {
        conv3x3_in(x, weight, bias, stride, relu, None)
    }

    /// [`conv3x3`] computed inside `active` only, zero outside (everywhere where `None`).
    pub fn conv3x3_in(
        x: FloatTensor<Flex>,
        weight: FloatTensor<Flex>,
        bias: Option<FloatTensor<Flex>>,
        stride: usize,
        relu: bool,
        active: Option<&ActiveArea>,
    ) -> FloatTensor<Flex> {
        if let Some(area) = active.filter(|_| !all_f32([&x, &weight])) {
            // Another element type: the whole map, then the area's mask.
            let out = conv3x3_in(x, weight, bias, stride, relu, None);
            return super::masked::<Flex>(out, area);
        }
        if !all_f32(
            [Some(&x), Some(&weight), bias.as_ref()]
                .into_iter()
                .flatten(),
        ) {
            let out = Flex::conv2d(x, weight, bias, super::options(stride));
            return if relu { Flex::relu(out) } else { out };
        }
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let bias = bias.map(|b| b.to_contiguous());
        let input @ [batch, _, height, width] = shape(&x);
        let c_out = shape(&weight)[0];
        let epilogue = super::Epilogue {
            bias: bias.as_ref().map(slice),
            relu,
            active,
        };
        let out = super::conv3x3_with(slice(&x), input, slice(&weight), c_out, epilogue, stride);
        let side = |s| super::output_side(s, stride);
        FloatTensor::<Flex>::from_data(TensorData::new(
            out,
            [batch, c_out, side(height), side(width)],
        ))
    }
}

/// The backward of [`Conv3x3Backend::conv3x3`]; its parents are the input, the weight and the
/// bias.
#[derive(Debug)]
struct Conv3x3Backward;

impl<B: Backend + Conv3x3Backend> Backward<B, 3> for Conv3x3Backward {
    /// Input, weight, and the stride.
    type State = (NodeId, NodeId, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, stride) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
        let weight: FloatTensor<B> = checkpointer.retrieve_node_output(weight_state);
        if let Some(node) = node_bias {
            // The sum of the output gradient over the batch and the pixels, per channel.
            let [batch, channels, height, width] = grad.shape().dims();
            let per_channel = B::float_reshape(
                B::float_swap_dims(grad.clone(), 0, 1),
                [channels, batch * height * width].into(),
            );
            let summed = B::float_sum_dim(per_channel, 1);
            grads.register::<B>(node.id, B::float_reshape(summed, [channels].into()));
        }
        if let Some(node) = node_weight {
            let options = options(stride);
            let dw = B::conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options);
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::conv3x3_x_backward(x, weight, grad, stride));
        }
    }
}

impl<B: Backend + Conv3x3Backend, C: CheckpointStrategy> Conv3x3Backend for Autodiff<B, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
    ) -> FloatTensor<Self> {
        let prepared = Conv3x3Backward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let forward = |x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>| {
            B::conv3x3(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride,
            )
        };
        match prepared {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight), stride);
                prep.finish(state, forward(x, weight, bias))
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x, weight, bias)),
        }
    }
}

/// [`conv3x3`] followed by a ReLU, for inference: one pass on flex.
pub fn conv3x3_relu(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: usize) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::conv3x3_relu(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
    ))
}

/// [`conv3x3`], and a ReLU where `relu`, with every output outside `active` zero: the dense
/// pass's convolutions, which flex computes only inside the area.
pub fn conv3x3_active(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    relu: bool,
    active: &ActiveArea,
) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::conv3x3_active(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        relu,
        active.clone(),
    ))
}

/// A 3x3 convolution with padding 1 of `x` `[B, C_in, H, W]` by `weight` `[C_out, C_in, 3, 3]`
/// at `stride`, plus `bias` `[C_out]`: [`conv3x3_f32`] on flex in wasm, Burn's `conv2d` elsewhere.
pub fn conv3x3(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: usize) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::conv3x3(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    pub(super) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Equal within 1e-4, relative to the expected value's size (and absolute below 1).
    pub(super) fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: lengths");
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() < 1e-4 * (1.0 + e.abs()),
                "{what}[{i}]: {a} vs {e}"
            );
        }
    }

    /// [`assert_close`] for F(4x4, 3x3), whose transforms' larger constants round in proportion
    /// to the sums' terms rather than to each output: within 2e-5 of the map's largest
    /// magnitude (the error measured against an f64 convolution was at most 6.4e-6 of it for
    /// CELNet's layers, F(2x2, 3x3)'s a twentieth of that).
    fn assert_close_to_scale(actual: &[f32], expected: &[f32], what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: lengths");
        let scale = expected.iter().fold(1.0f32, |m, e| m.max(e.abs()));
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() < 2e-5 * scale,
                "{what}[{i}]: {a} vs {e} (scale {scale})"
            );
        }
    }

    /// Shapes with odd sides, rows that are not whole blocks of eight, channel counts that are
    /// not whole groups of four, a batch of two, and CELNet's own layers.
    const CASES: [([usize; 4], usize, usize); 7] = [
        ([2, 3, 13, 11], 16, 1),
        ([1, 5, 9, 10], 6, 2),
        ([1, 2, 7, 7], 1, 1),
        ([2, 16, 17, 19], 32, 2),
        ([1, 16, 96, 96], 16, 1),
        ([1, 32, 48, 48], 64, 2),
        ([1, 64, 24, 24], 64, 1),
    ];

    #[test]
    fn the_kernels_match_burns_convolution() {
        let device = Device::flex();
        for (shape, c_out, stride) in CASES {
            let x = random(shape, &device);
            let weight = random([c_out, shape[1], 3, 3], &device);
            let bias = random([c_out], &device);
            let expected = burn::tensor::module::conv2d(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options(stride),
            );
            let (xs, ws, bs) = (values(x), values(weight), values(bias));
            let expected = values(expected);
            let what = format!("{shape:?} -> {c_out}, /{stride}");
            let ours = conv3x3_f32(&xs, shape, &ws, c_out, Some(&bs), stride);
            assert_close_to_scale(&ours, &expected, &what);
            let rectified: Vec<f32> = expected.iter().map(|v| v.max(0.0)).collect();
            for relu in [false, true] {
                let (epilogue, expected) = match relu {
                    false => (
                        Epilogue {
                            bias: Some(&bs),
                            relu,
                            active: None,
                        },
                        &expected,
                    ),
                    true => (
                        Epilogue {
                            bias: Some(&bs),
                            relu,
                            active: None,
                        },
                        &rectified,
                    ),
                };
                for kernel in Kernel::available() {
                    let what = format!("{kernel:?}, ReLU {relu}, {what}");
                    let direct =
                        direct::direct3x3_with(kernel, &xs, shape, &ws, c_out, epilogue, stride);
                    assert_close(&direct, expected, &format!("direct {what}"));
                    if stride == 1 {
                        let winograd =
                            winograd::winograd3x3_with(kernel, &xs, shape, &ws, c_out, epilogue);
                        assert_close_to_scale(&winograd, expected, &format!("Winograd {what}"));
                    }
                }
            }
        }
    }

    #[test]
    fn inside_an_active_area_the_kernels_compute_burns_convolution_and_zero_elsewhere() {
        use crate::network::active_area::ActiveArea;
        use crate::network::pooling::DenseWindows;
        // 96-px windows every 32 px over a 224 x 320 map (7 x 10 cells of 32 px), three kept
        // far apart: each row of cells has its own span, some none, and spans do not start or
        // end on whole blocks of outputs.
        let grid = DenseWindows::covering(224, 320, 96, 32).unwrap();
        let mut kept = vec![false; grid.rows * grid.cols];
        for (row, col) in [(0, 0), (4, 6), (1, 7)] {
            kept[row * grid.cols + col] = true;
        }
        let area = ActiveArea::around(grid, &kept, 32);
        assert!(area.fraction() > 0.3 && area.fraction() < 0.9);
        let device = Device::flex();
        for (c_in, c_out, stride) in [(3, 16, 1), (16, 16, 1), (16, 32, 2), (32, 8, 2)] {
            let shape = [1, c_in, 224, 320];
            let x = random(shape, &device);
            let weight = random([c_out, c_in, 3, 3], &device);
            let bias = random([c_out], &device);
            let whole = burn::tensor::module::conv2d(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options(stride),
            );
            let [_, _, h, w] = whole.dims();
            let mask = area.mask([h, w]);
            let (xs, ws, bs) = (values(x), values(weight), values(bias));
            let whole = values(whole);
            for relu in [false, true] {
                let expected: Vec<f32> = whole
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| if relu { v.max(0.0) } else { v } * mask[i % (h * w)])
                    .collect();
                let epilogue = Epilogue {
                    bias: Some(&bs),
                    relu,
                    active: Some(&area),
                };
                for kernel in Kernel::available() {
                    let what = format!("{kernel:?}, {c_in} -> {c_out} /{stride}, ReLU {relu}");
                    let direct =
                        direct::direct3x3_with(kernel, &xs, shape, &ws, c_out, epilogue, stride);
                    assert_close(&direct, &expected, &format!("direct {what}"));
                    if stride == 1 && c_in >= 8 {
                        let winograd =
                            winograd::winograd3x3_with(kernel, &xs, shape, &ws, c_out, epilogue);
                        assert_close_to_scale(&winograd, &expected, &format!("Winograd {what}"));
                    }
                }
            }
        }
    }

    #[test]
    fn the_fused_relu_is_burns_relu_of_the_convolution() {
        let device = Device::flex();
        let x = random([1, 16, 21, 19], &device);
        let weight = random([16, 16, 3, 3], &device);
        let bias = random([16], &device);
        for stride in [1, 2] {
            let expected = burn::tensor::activation::relu(conv3x3(
                x.clone(),
                weight.clone(),
                bias.clone(),
                stride,
            ));
            let fused = conv3x3_relu(x.clone(), weight.clone(), bias.clone(), stride);
            assert_close(
                &values(fused),
                &values(expected),
                &format!("stride {stride}"),
            );
        }
    }

    fn flex_tensor<const D: usize>(t: Tensor<D>) -> FloatTensor<Flex> {
        FloatTensor::<Flex>::from_data(t.into_data())
    }

    /// The gradient of `sum(conv3x3(x, weight, bias) * grad)` with respect to x, weight and bias,
    /// through autodiff on `conv` (Burn's `conv2d` or this module's operation).
    fn gradients(
        conv: impl Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
        [x, weight, bias, grad]: [Tensor<4>; 4],
    ) -> [Vec<f32>; 3] {
        let x = x.autodiff().require_grad();
        let weight = weight.autodiff().require_grad();
        let bias = bias.flatten::<1>(0, 3).autodiff().require_grad();
        let out = conv(x.clone(), weight.clone(), bias.clone());
        let grads = (out * grad.autodiff()).sum().backward();
        [
            values(x.grad(&grads).unwrap()),
            values(weight.grad(&grads).unwrap()),
            values(bias.grad(&grads).unwrap()),
        ]
    }

    #[test]
    fn the_operation_has_burns_gradients() {
        let device = Device::flex();
        for stride in [1, 2] {
            let (shape, c_out) = ([2, 5, 11, 9], 6);
            let out = [2, c_out, output_side(11, stride), output_side(9, stride)];
            let inputs = [
                random(shape, &device),
                random([c_out, 5, 3, 3], &device),
                random([c_out, 1, 1, 1], &device),
                random(out, &device),
            ];
            let burns = gradients(
                |x, w, b| burn::tensor::module::conv2d(x, w, Some(b), options(stride)),
                inputs.clone(),
            );
            let ours = gradients(|x, w, b| conv3x3(x, w, b, stride), inputs);
            for (what, (o, b)) in ["x", "weight", "bias"].iter().zip(ours.iter().zip(&burns)) {
                assert_close(o, b, &format!("d{what} at stride {stride}"));
            }
        }
    }

    #[test]
    fn the_flipped_kernel_is_burns_flip_of_the_swapped_axes() {
        let device = Device::flex();
        let weight = random([6, 5, 3, 3], &device);
        let expected = values(weight.clone().swap_dims(0, 1).flip([2, 3]));
        assert_eq!(flipped_transposed(&values(weight), 6, 5), expected);
    }

    #[test]
    fn the_flipped_kernel_is_the_input_gradient_at_stride_one() {
        let device = Device::flex();
        let (shape, c_out) = ([2, 5, 11, 9], 6);
        let (weight, grad) = (
            random([c_out, 5, 3, 3], &device),
            random([2, c_out, 11, 9], &device),
        );
        let bias = Tensor::zeros([c_out, 1, 1, 1], &device);
        let inputs = [random(shape, &device), weight.clone(), bias, grad.clone()];
        let [expected, _, _] = gradients(
            |x, w, b| burn::tensor::module::conv2d(x, w, Some(b), options(1)),
            inputs,
        );
        let x = Tensor::<4>::zeros(shape, &device);
        let ours =
            flex::conv3x3_x_backward(flex_tensor(x), flex_tensor(weight), flex_tensor(grad), 1);
        assert_close(
            &ours.into_data().try_to_vec::<f32>().unwrap(),
            &expected,
            "dx",
        );
    }

    #[test]
    fn the_parities_are_the_input_gradient_at_stride_two() {
        let device = Device::flex();
        // Even and odd sides (an odd side has one more even row than odd rows).
        for (shape, c_out) in [
            ([2, 5, 12, 10], 6),
            ([1, 3, 11, 9], 4),
            ([1, 16, 96, 96], 32),
        ] {
            let [_, c_in, height, width] = shape;
            let out = [
                shape[0],
                c_out,
                output_side(height, 2),
                output_side(width, 2),
            ];
            let (weight, grad) = (random([c_out, c_in, 3, 3], &device), random(out, &device));
            let inputs = [
                random(shape, &device),
                weight.clone(),
                Tensor::zeros([c_out, 1, 1, 1], &device),
                grad.clone(),
            ];
            let [expected, _, _] = gradients(
                |x, w, b| burn::tensor::module::conv2d(x, w, Some(b), options(2)),
                inputs.clone(),
            );
            let ours = direct::input_gradient_stride2(
                &values(grad.clone()),
                out,
                &values(weight.clone()),
                [height, width],
            );
            assert_close(&ours, &expected, &format!("dx of {shape:?}"));
            let through_flex = flex::conv3x3_x_backward(
                flex_tensor(inputs[0].clone()),
                flex_tensor(weight),
                flex_tensor(grad),
                2,
            );
            let through_flex = through_flex.into_data().try_to_vec::<f32>().unwrap();
            assert_close(&through_flex, &expected, &format!("flex dx of {shape:?}"));
        }
    }

    #[test]
    fn flex_tensors_in_any_layout_convolve_like_burn() {
        let device = Device::flex();
        // A transposed (non-contiguous) input.
        let stored = random([1, 4, 10, 12], &device);
        let x = stored.clone().swap_dims(2, 3);
        let weight = random([8, 4, 3, 3], &device);
        let bias = random([8], &device);
        let expected =
            burn::tensor::module::conv2d(x.clone(), weight.clone(), Some(bias.clone()), options(2));
        let x = flex_tensor(stored).permute(&[0, 1, 3, 2]);
        assert!(!x.is_contiguous());
        let ours = flex::conv3x3(x, flex_tensor(weight), Some(flex_tensor(bias)), 2, false);
        assert_eq!(ours.layout().shape().to_vec(), expected.dims().to_vec());
        assert_close(
            &ours.into_data().try_to_vec::<f32>().unwrap(),
            &values(expected),
            "out",
        );
    }
}
