"""PyTorch reference for the native GPU throughput figures in docs/speed.md.

The same CELNet architecture as src/network/model.rs (302,055 learnable parameters), written
independently in PyTorch, timed the way `celnet train` and `celnet eval` run: a training step is
forward, binary cross-entropy, backward and an Adam update on a batch of 64 crops of 64x64; a
scoring step is a forward pass on a batch of whole 96x96 glimpses in evaluation mode. Random
inputs: the figures are throughput only.

    python3 benches/torch_celnet.py [--steps 200] [--device cuda]

Prints one JSON line with images per second for training and scoring.
"""

import argparse
import json
import time

import torch
from torch import nn


class ConvBn(nn.Sequential):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        )


class ChannelAttention(nn.Module):
    def __init__(self, channels, ratio=4):
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias=False),
        )

    def forward(self, x):
        weights = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))
        return x * torch.sigmoid(weights)[:, :, None, None]


class SpatialAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(2, 1, k, padding=k // 2, bias=False) for k in (3, 5, 7)
        )

    def forward(self, x):
        summary = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(sum(branch(summary) for branch in self.branches))


class MaResBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = ConvBn(c_in, c_out, stride)
        self.conv2 = ConvBn(c_out, c_out)
        self.channel = ChannelAttention(c_out)
        self.spatial = SpatialAttention()
        self.shortcut = (
            ConvBn(c_in, c_out, stride) if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x):
        out = self.conv2(torch.relu(self.conv1(x)))
        out = self.spatial(self.channel(out))
        return torch.relu(out + self.shortcut(x))


def stage(c_in, c_out, stride, blocks=3):
    return nn.Sequential(
        *(MaResBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(blocks))
    )


class Celnet(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.head = ConvBn(3, c)
        self.module1 = stage(c, c, 1)
        self.module2 = stage(c, 2 * c, 2)
        self.module3 = stage(2 * c, 4 * c, 2)
        self.classifier = nn.Linear(2 * (2 * c + 4 * c), 1)

    def forward(self, x):
        f2 = self.module2(self.module1(torch.relu(self.head(x))))
        f3 = self.module3(f2)
        # Deep supervision: average and max of F2, then of F3, into one linear classifier.
        companions = [pool(f) for f in (f2, f3) for pool in (lambda t: t.mean((2, 3)), lambda t: t.amax((2, 3)))]
        return self.classifier(torch.cat(companions, 1))


def images_per_second(step, batch, steps, device):
    for _ in range(10):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = args.device

    model = Celnet().to(device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = nn.BCEWithLogitsLoss()
    crops = torch.randn(64, 3, 64, 64, device=device)
    labels = torch.randint(0, 2, (64, 1), device=device).float()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(crops), labels).backward()
        optimizer.step()

    model.train()
    train = images_per_second(train_step, 64, args.steps, device)

    glimpses = torch.randn(64, 3, 96, 96, device=device)

    def score_step():
        with torch.no_grad():
            torch.sigmoid(model(glimpses)).cpu()

    model.eval()
    score = images_per_second(score_step, 64, args.steps, device)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "device": name,
                "params": params,
                "train_images_per_s": round(train, 1),
                "score_images_per_s": round(score, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
