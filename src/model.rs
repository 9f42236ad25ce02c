//! CELNet: a small residual CNN with multi-branch attention and deep supervision (Y. Huang and
//! A. C. S. Chung, "CELNet: Evidence Localization for Pathology Images using Weakly Supervised
//! Learning", MICCAI 2019, LNCS 11764, pp. 613-621).
//!
//! The forward pass is split at the two layers that CELM explains (F2 and F3), so the
//! explanation engine can cut the graph there and read the gradients it needs.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

use crate::guided::ReluKind;

/// Side of the glimpses the model is trained on (PCam patches, about 1 µm/px).
pub const GLIMPSE: usize = 96;
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

/// A 3x3 convolution without bias followed by batch normalisation.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
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
            bn: BatchNormConfig::new(channels_out).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
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

    fn forward(&self, x: Tensor<4>, relu: ReluKind) -> Tensor<4> {
        let [batch, channels, _, _] = x.dims();
        let avg = x.clone().mean_dims(&[2, 3]).reshape([batch, channels]);
        let max = x.max_dims(&[2, 3]).reshape([batch, channels]);
        let weights = sigmoid(self.mlp(avg, relu) + self.mlp(max, relu));
        weights.reshape([batch, channels, 1, 1])
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
        let summary = Tensor::cat(vec![x.clone().mean_dim(1), x.max_dim(1)], 1);
        let options = ConvOptions::new([1, 1], [3, 3], [1, 1], 1);
        sigmoid(conv2d(summary, self.fused_kernel(), None, options))
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

    fn forward(&self, x: Tensor<4>, relu: ReluKind) -> Tensor<4> {
        let out = relu.apply(self.conv1.forward(x.clone()));
        let out = self.conv2.forward(out);
        let out = out.clone() * self.channel_attention.forward(out, relu);
        let out = out.clone() * self.spatial_attention.forward(out);
        let identity = match &self.shortcut {
            Some(shortcut) => shortcut.forward(x),
            None => x,
        };
        relu.apply(out + identity)
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

    fn forward(&self, x: Tensor<4>, relu: ReluKind) -> Tensor<4> {
        self.blocks
            .iter()
            .fold(x, |x, block| block.forward(x, relu))
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
    let avg = features
        .clone()
        .mean_dims(&[2, 3])
        .reshape([batch, channels]);
    let max = features.max_dims(&[2, 3]).reshape([batch, channels]);
    Tensor::cat(vec![avg, max], 1)
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
        let x = relu.apply(self.head.forward(images));
        let x = self.module1.forward(x, relu);
        self.module2.forward(x, relu)
    }

    /// F2 to F3: module 3 (`[B, 64, H/4, W/4]`).
    pub fn features3(&self, f2: Tensor<4>, relu: ReluKind) -> Tensor<4> {
        self.module3.forward(f2, relu)
    }

    /// The deeply supervised head: both companions feed one linear classifier.
    pub fn classify(&self, f2: Tensor<4>, f3: Tensor<4>) -> Tensor<2> {
        let features = Tensor::cat(vec![companion(f2), companion(f3)], 1);
        self.classifier.forward(features)
    }
}
