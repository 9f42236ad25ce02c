//! CELNet: a small residual CNN with multi-branch attention and deep supervision (Y. Huang and
//! A. C. S. Chung, "CELNet: Evidence Localization for Pathology Images using Weakly Supervised
//! Learning", MICCAI 2019, LNCS 11764, pp. 613-621).
//!
//! The forward pass is split at the two layers that CELM explains (F2 and F3), so the
//! explanation engine can cut the graph there and read the gradients it needs.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::network::active_area::ActiveArea;
use crate::network::conv::{conv_same, conv3x3, conv3x3_active, conv3x3_relu};
use crate::network::guided::ReluKind;
use crate::network::max_reduce::channel_max;
use crate::network::pooling::{DenseWindows, Pooling};
use crate::network::profile::span;
use crate::network::window_attention::attended_residual;

/// The [`span`] of the ReLUs and residual additions.
const RELU: &str = "ReLU and residual additions";

pub use crate::network::pooling::GLIMPSE;

/// Smallest input the network accepts: two stride-2 stages must leave at least an 8x8 F3.
pub const MIN_INPUT: usize = 32;

/// Architecture hyper-parameters. The defaults are the paper's.
#[derive(Config, Debug)]
pub struct CelnetConfig {
    /// Channels of the head convolution and of module 1.
    #[config(default = 16)]
    pub base_channels: usize,
    /// MA-Res blocks per module.
    #[config(default = 3)]
    pub blocks_per_module: usize,
    /// Squeeze ratio of the channel attention MLP.
    #[config(default = 4)]
    pub attention_ratio: usize,
}

/// A 3x3 convolution without bias followed by batch normalisation; for inference the
/// normalisation is folded into the convolution's weights and a bias ([`ConvBn::folded`]).
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    /// `None` once folded into `conv`.
    bn: Option<BatchNorm>,
}

impl ConvBn {
    fn new(channels_in: usize, channels_out: usize, stride: usize, device: &Device) -> Self {
        let conv = Conv2dConfig::new([channels_in, channels_out], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(device);
        Self {
            conv,
            bn: Some(BatchNormConfig::new(channels_out).init(device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        span("3x3 convolutions", || match (&self.bn, &self.conv.bias) {
            (Some(bn), _) => bn.forward(self.conv.forward(x)),
            (None, Some(bias)) => {
                conv3x3(x, self.conv.weight.val(), bias.val(), self.conv.stride[0])
            }
            (None, None) => self.conv.forward(x),
        })
    }

    /// `relu(self.forward(x))`, in one pass over the map once folded (for inference).
    fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        match (&self.bn, &self.conv.bias) {
            (None, Some(bias)) => span("3x3 convolutions", || {
                conv3x3_relu(x, self.conv.weight.val(), bias.val(), self.conv.stride[0])
            }),
            _ => {
                let out = self.forward(x);
                span(RELU, || burn::tensor::activation::relu(out))
            }
        }
    }

    /// The dense pass's convolution, with its ReLU where `relu`, computed only inside `active`
    /// and zero outside it (where given; the whole map otherwise).
    fn forward_in(&self, x: Tensor<4>, relu: bool, active: Option<&ActiveArea>) -> Tensor<4> {
        match (active, &self.bn, &self.conv.bias) {
            (Some(area), None, Some(bias)) => span("3x3 convolutions", || {
                let (weight, stride) = (self.conv.weight.val(), self.conv.stride[0]);
                conv3x3_active(x, weight, bias.val(), stride, relu, area)
            }),
            (None, ..) if relu => self.forward_relu(x),
            (None, ..) => self.forward(x),
            (Some(area), ..) => {
                // Not folded: the whole map, then the area's mask.
                let out = self.forward(x);
                let out = if relu {
                    burn::tensor::activation::relu(out)
                } else {
                    out
                };
                let [_, _, height, width] = out.dims();
                let mask = TensorData::new(area.mask([height, width]), [1, 1, height, width]);
                let mask = Tensor::<4>::from_data(mask, &out.device());
                out * mask
            }
        }
    }

    /// The same map with batch normalisation's running statistics folded into the
    /// convolution: `w' = w * s`, `b = beta - mean * s` with `s = gamma / sqrt(var + eps)` per
    /// output channel. Valid for inference only: training normalises by batch statistics.
    fn folded(self) -> Self {
        let Some(bn) = self.bn else { return self };
        let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
        let bias = bn.beta.val() - bn.running_mean.value() * scale.clone();
        let [channels] = scale.dims();
        let weight = self.conv.weight.val() * scale.reshape([channels, 1, 1, 1]);
        let conv = Conv2d {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(bias)),
            ..self.conv
        };
        Self { conv, bn: None }
    }
}

/// The logistic function as `(1 + tanh(x / 2)) / 2`, the same values as Burn's `sigmoid`.
/// Natively wgpu fuses operations, and Burn 0.22's fused sigmoid backward gave wrong gradients
/// on lavapipe for maps of 48x48 and more (different shapes from run to run); this form's
/// gradients equal flex's there.
fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    ((x * 0.5).tanh() + 1.0) * 0.5
}

/// CBAM channel attention: `sigmoid(MLP(avgpool F) + MLP(maxpool F))`, one weight per channel.
/// The MLP's 1x1 convolutions on a 1x1 map are linear maps, stored as bias-free `Linear`s.
#[derive(Module, Debug)]
pub struct ChannelAttention {
    squeeze: Linear,
    excite: Linear,
}

impl ChannelAttention {
    fn new(channels: usize, ratio: usize, device: &Device) -> Self {
        let hidden = (channels / ratio).max(1);
        Self {
            squeeze: LinearConfig::new(channels, hidden)
                .with_bias(false)
                .init(device),
            excite: LinearConfig::new(hidden, channels)
                .with_bias(false)
                .init(device),
        }
    }

    fn mlp(&self, pooled: Tensor<2>, relu: ReluKind) -> Tensor<2> {
        self.excite
            .forward(relu.apply(self.squeeze.forward(pooled)))
    }

    /// Channel weights for `x`: `[B, C, 1, 1]` globally, `[B, C, rows, cols]` per window.
    fn forward(&self, x: Tensor<4>, relu: ReluKind, pooling: Pooling) -> Tensor<4> {
        let [batch, channels, _, _] = x.dims();
        let (avg, max) = pooling.avg_max(x);
        let [_, _, rows, cols] = avg.dims();
        // The MLP runs on each window's pooled vector: [B * rows * cols, C].
        let vectors = |t: Tensor<4>| {
            t.permute([0, 2, 3, 1])
                .reshape([batch * rows * cols, channels])
        };
        // Both pooled vectors of every window through the MLP in one batch.
        let windows = batch * rows * cols;
        let both = self.mlp(Tensor::cat(vec![vectors(avg), vectors(max)], 0), relu);
        sigmoid(both.clone().narrow(0, 0, windows) + both.narrow(0, windows, windows))
            .reshape([batch, rows, cols, channels])
            .permute([0, 3, 1, 2])
    }
}

/// Multi-branch spatial attention: `sigmoid(conv3x3(S) + conv5x5(S) + conv7x7(S))` with
/// `S = [mean over channels, max over channels]`, one weight per pixel.
#[derive(Module, Debug)]
pub struct SpatialAttention {
    branch3: Conv2d,
    branch5: Conv2d,
    branch7: Conv2d,
}

impl SpatialAttention {
    fn new(device: &Device) -> Self {
        let branch = |k: usize| {
            let pad = k / 2;
            Conv2dConfig::new([2, 1], [k, k])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device)
        };
        Self {
            branch3: branch(3),
            branch5: branch(5),
            branch7: branch(7),
        }
    }

    /// The three "same" convolutions summed are one 7x7 convolution whose kernel is the sum of
    /// the three kernels zero-padded to 7x7: one pass over the map instead of three.
    fn fused_kernel(&self) -> Tensor<4> {
        let w3 = self.branch3.weight.val().pad((2, 2, 2, 2), 0.0);
        let w5 = self.branch5.weight.val().pad((1, 1, 1, 1), 0.0);
        w3 + w5 + self.branch7.weight.val()
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let summary = Tensor::cat(vec![x.clone().mean_dim(1), channel_max(x)], 1);
        self.of_summary(summary)
    }

    /// The attention from the summary `S` `[B, 2, H, W]`.
    fn of_summary(&self, summary: Tensor<4>) -> Tensor<4> {
        sigmoid(conv_same(summary, self.fused_kernel()))
    }
}

/// Residual block with the multi-branch attention module (MA-Res).
#[derive(Module, Debug)]
pub struct MaResBlock {
    conv1: ConvBn,
    conv2: ConvBn,
    channel_attention: ChannelAttention,
    spatial_attention: SpatialAttention,
    /// A strided 3x3 conv + BN where the shape changes (the paper's choice over 1x1).
    shortcut: Option<ConvBn>,
}

impl MaResBlock {
    fn new(
        channels_in: usize,
        channels_out: usize,
        stride: usize,
        ratio: usize,
        device: &Device,
    ) -> Self {
        let shortcut = (stride != 1 || channels_in != channels_out)
            .then(|| ConvBn::new(channels_in, channels_out, stride, device));
        Self {
            conv1: ConvBn::new(channels_in, channels_out, stride, device),
            conv2: ConvBn::new(channels_out, channels_out, 1, device),
            channel_attention: ChannelAttention::new(channels_out, ratio, device),
            spatial_attention: SpatialAttention::new(device),
            shortcut,
        }
    }

    fn folded(self) -> Self {
        Self {
            conv1: self.conv1.folded(),
            conv2: self.conv2.folded(),
            shortcut: self.shortcut.map(ConvBn::folded),
            ..self
        }
    }

    /// `active`: where the dense pass computes (with [`Pooling::Windows`] only).
    fn forward(
        &self,
        x: Tensor<4>,
        relu: ReluKind,
        pooling: Pooling,
        active: Option<&ActiveArea>,
    ) -> Tensor<4> {
        let out = match pooling {
            // The dense pass is inference, where every kind of ReLU is the standard one forward.
            Pooling::Windows(_) => self.conv1.forward_in(x.clone(), true, active),
            _ => {
                let out = self.conv1.forward(x.clone());
                span(RELU, || relu.apply(out))
            }
        };
        let out = self.conv2.forward_in(out, false, active);
        let weights = span("channel attention", || {
            self.channel_attention.forward(out.clone(), relu, pooling)
        });
        // After attention, so that the shortcut's map is not held while attention runs.
        let identity = move || match &self.shortcut {
            Some(shortcut) => shortcut.forward_in(x, false, active),
            None => x,
        };
        let Pooling::Windows(grid) = pooling else {
            let out = span("channel attention", || out * weights);
            let out = span("spatial attention", || {
                out.clone() * self.spatial_attention.forward(out)
            });
            let identity = identity();
            return span(RELU, || relu.apply(out + identity));
        };
        // The dense pass, which is never differentiated: each block takes its nearest window's
        // weights, and spatial attention and the block's end are one pass on flex that never
        // stores the reweighted map (`window_attention`), ending in the standard ReLU, which
        // every kind computes forward, and a plain sigmoid, where the form that keeps wgpu's
        // gradients right takes four passes.
        let [_, _, height, width] = out.dims();
        let weights = span("channel attention", || {
            grid.block_weights(weights, [height, width])
        });
        let identity = identity();
        span("spatial attention and block end", || {
            let kernel = self.spatial_attention.fused_kernel();
            attended_residual(out, weights, kernel, identity)
        })
    }
}

/// A stack of MA-Res blocks; the first one carries the stride.
#[derive(Module, Debug)]
pub struct Stage {
    blocks: Vec<MaResBlock>,
}

impl Stage {
    fn new(
        channels_in: usize,
        channels_out: usize,
        stride: usize,
        config: &CelnetConfig,
        device: &Device,
    ) -> Self {
        let blocks = (0..config.blocks_per_module)
            .map(|i| {
                let (c_in, s) = if i == 0 {
                    (channels_in, stride)
                } else {
                    (channels_out, 1)
                };
                MaResBlock::new(c_in, channels_out, s, config.attention_ratio, device)
            })
            .collect();
        Self { blocks }
    }

    fn folded(self) -> Self {
        Self {
            blocks: self.blocks.into_iter().map(MaResBlock::folded).collect(),
        }
    }

    /// `pooling` is given at the stage's output resolution; `active` is where the dense pass
    /// computes.
    fn forward(
        &self,
        x: Tensor<4>,
        relu: ReluKind,
        pooling: Pooling,
        active: Option<&ActiveArea>,
    ) -> Tensor<4> {
        self.blocks
            .iter()
            .fold(x, |x, block| block.forward(x, relu, pooling, active))
    }
}

/// The CELNet network.
#[derive(Module, Debug)]
pub struct Celnet {
    head: ConvBn,
    module1: Stage,
    module2: Stage,
    module3: Stage,
    /// One linear map from the 192 companion features (avg+max of F2 and F3) to the logit.
    classifier: Linear,
}

/// Concatenated global average and global max pooling: `[B, C, H, W] -> [B, 2C]`.
pub fn companion(features: Tensor<4>) -> Tensor<2> {
    let [batch, channels, _, _] = features.dims();
    let (avg, max) = Pooling::Global.avg_max(features);
    Tensor::cat(
        vec![
            avg.reshape([batch, channels]),
            max.reshape([batch, channels]),
        ],
        1,
    )
}

impl CelnetConfig {
    /// A freshly initialised network on `device`.
    pub fn init(&self, device: &Device) -> Celnet {
        let c = self.base_channels;
        Celnet {
            head: ConvBn::new(3, c, 1, device),
            module1: Stage::new(c, c, 1, self, device),
            module2: Stage::new(c, 2 * c, 2, self, device),
            module3: Stage::new(2 * c, 4 * c, 2, self, device),
            classifier: LinearConfig::new(2 * (2 * c + 4 * c), 1).init(device),
        }
    }
}

/// Counts learnable parameters, skipping batch norm's running statistics (buffers, not
/// parameters: they are not counted in the paper's 297K either).
#[derive(Default)]
struct LearnableCounter {
    path: Vec<String>,
    count: usize,
}

impl burn::module::ModuleVisitor for LearnableCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let running = self
            .path
            .last()
            .is_some_and(|name| name.starts_with("running_"));
        if !running {
            self.count += param.lazy_shape().num_elements();
        }
    }
}

impl Celnet {
    /// Number of learnable parameters (302,055 for the paper's configuration).
    pub fn learnable_params(&self) -> usize {
        let mut counter = LearnableCounter::default();
        self.visit(&mut counter);
        counter.count
    }

    /// The network for inference: batch normalisation folded into the convolutions before it
    /// (the same function up to rounding, with 21 fewer passes over the activations). Not for
    /// training, which normalises by batch statistics, nor for saving.
    pub fn folded(self) -> Self {
        Self {
            head: self.head.folded(),
            module1: self.module1.folded(),
            module2: self.module2.folded(),
            module3: self.module3.folded(),
            ..self
        }
    }

    /// The same network with its logits divided by `temperature` (temperature scaling, see
    /// [`crate::train::calibration`]), folded into the classifier's weights and bias: the weights file
    /// carries its calibration, and every score, map and export uses it. Explanations are
    /// unchanged, since CELM normalises each map.
    ///
    /// # Panics
    /// Unless `temperature` is positive and finite.
    pub fn with_temperature(self, temperature: f32) -> Self {
        assert!(
            temperature.is_finite() && temperature > 0.0,
            "temperature {temperature} is not positive"
        );
        self.with_logit_map(1.0 / temperature, 0.0)
    }

    /// The same network with its logit `z` replaced by `scale · z + shift` (Platt scaling),
    /// folded into the classifier as [`Celnet::with_temperature`] is. A shift moves the
    /// decision threshold, which a fine-tune on unbalanced classes needs.
    ///
    /// # Panics
    /// Unless `scale` is positive and finite and `shift` finite.
    pub fn with_logit_map(self, scale: f32, shift: f32) -> Self {
        assert!(
            scale.is_finite() && scale > 0.0 && shift.is_finite(),
            "logit map {scale} z + {shift} is not an increasing one"
        );
        let weight = self.classifier.weight.val();
        let device = weight.device();
        let bias = match &self.classifier.bias {
            Some(bias) => bias.val() * scale + shift,
            None => Tensor::<1>::full([1], shift, &device),
        };
        let classifier = Linear {
            weight: Param::from_tensor(weight * scale),
            bias: Some(Param::from_tensor(bias)),
        };
        Self { classifier, ..self }
    }

    /// Logits `[B, 1]` for a batch of normalised images `[B, 3, H, W]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_with(images, ReluKind::Standard)
    }

    /// [`Celnet::forward`] with the given kind of ReLU everywhere.
    pub fn forward_with(&self, images: Tensor<4>, relu: ReluKind) -> Tensor<2> {
        let f2 = self.features2(images, relu);
        let f3 = self.features3(f2.clone(), relu);
        self.classify(f2, f3)
    }

    /// Input to F2: head, module 1 and module 2 (`[B, 32, H/2, W/2]` for the paper's widths).
    pub fn features2(&self, images: Tensor<4>, relu: ReluKind) -> Tensor<4> {
        self.features2_pooled(images, relu, Pooling::Global, None)
    }

    /// F2 to F3: module 3 (`[B, 64, H/4, W/4]`).
    pub fn features3(&self, f2: Tensor<4>, relu: ReluKind) -> Tensor<4> {
        self.module3.forward(f2, relu, Pooling::Global, None)
    }

    /// [`Celnet::features2`] with `pooling` given at the input's resolution, computed inside
    /// `active` where given.
    fn features2_pooled(
        &self,
        images: Tensor<4>,
        relu: ReluKind,
        pooling: Pooling,
        active: Option<&ActiveArea>,
    ) -> Tensor<4> {
        let x = match active {
            Some(_) => self.head.forward_in(images, true, active),
            None => {
                let x = self.head.forward(images);
                span(RELU, || relu.apply(x))
            }
        };
        let x = self.module1.forward(x, relu, pooling, active);
        self.module2.forward(x, relu, pooling.downscaled(2), active)
    }

    /// Logits `[B, rows, cols]` of the [`GLIMPSE`]-px windows every `stride` px that cover
    /// `images` `[B, 3, H, W]`, in one fully convolutional pass: the windows share the trunk's
    /// computation, and attention and companions pool over each window's footprint
    /// ([`Pooling::Windows`]). A window's logit differs from [`Celnet::forward`] on its crop
    /// because its border sees neighbouring tissue instead of zero padding and because shared
    /// blocks are reweighted by the nearest window's channel attention.
    ///
    /// Where `active` is given the convolutions compute only inside it and every map is zero
    /// outside ([`ActiveArea`]): the logits of windows that lie whole inside it with their
    /// context are kept, the others are not meaningful.
    ///
    /// # Panics
    /// Unless [`DenseWindows::of_glimpses`] accepts the input's size and `stride` (callers that
    /// take sizes from users check it first, as [`crate::network::classifier::Classifier`] does).
    pub fn forward_windows(
        &self,
        images: Tensor<4>,
        stride: usize,
        active: Option<&ActiveArea>,
    ) -> Tensor<3> {
        let [batch, _, height, width] = images.dims();
        let grid =
            DenseWindows::of_glimpses(height, width, stride).unwrap_or_else(|e| panic!("{e}"));
        let pooling = Pooling::Windows(grid);
        let relu = ReluKind::Standard;
        let f2 = self.features2_pooled(images, relu, pooling, active);
        let f3 = self
            .module3
            .forward(f2.clone(), relu, pooling.downscaled(4), active);
        span("companions and classifier", || {
            let companions = |features: Tensor<4>, pooling: Pooling| {
                let (avg, max) = pooling.avg_max(features);
                Tensor::cat(vec![avg, max], 1)
            };
            let features = Tensor::cat(
                vec![
                    companions(f2, pooling.downscaled(2)),
                    companions(f3, pooling.downscaled(4)),
                ],
                1,
            );
            self.classifier
                .forward(features.permute([0, 2, 3, 1]))
                .reshape([batch, grid.rows, grid.cols])
        })
    }

    /// The deeply supervised head: both companions feed one linear classifier.
    pub fn classify(&self, f2: Tensor<4>, f3: Tensor<4>) -> Tensor<2> {
        span("companions and classifier", || {
            let features = Tensor::cat(vec![companion(f2), companion(f3)], 1);
            self.classifier.forward(features)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn a_grid_of_one_window_is_the_glimpse_itself() {
        let device = Device::flex();
        let model = CelnetConfig::new().init(&device);
        let images = Tensor::<4>::random([2, 3, 96, 96], Distribution::Default, &device);
        let dense = values(
            model
                .forward_windows(images.clone(), 32, None)
                .reshape([2, 1, 1, 1]),
        );
        let plain = values(model.forward(images).reshape([2, 1, 1, 1]));
        for (d, p) in dense.iter().zip(&plain) {
            assert!((d - p).abs() < 1e-4, "dense {d} vs plain {p}");
        }
    }

    #[test]
    fn folding_batch_norm_keeps_the_function() {
        // The shipped weights: trained running statistics, not the initial zeros and ones.
        let device = Device::flex();
        let model = crate::weights::load_default(&device).unwrap();
        let images = Tensor::<4>::random([2, 3, 96, 96], Distribution::Default, &device);
        let plain = values(model.forward(images.clone()).reshape([2, 1, 1, 1]));
        let folded = values(model.folded().forward(images).reshape([2, 1, 1, 1]));
        for (f, p) in folded.iter().zip(&plain) {
            assert!((f - p).abs() < 1e-4, "folded {f} vs plain {p}");
        }
    }
}
