"""Small PyTorch CNNs that the ONNX tests export with both torch.onnx exporters and read back.

Each builder returns (module in eval mode with non-trivial batch-norm statistics, input shape
without the batch). Built only when torch is installed (the tests importorskip it)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as TF


def _randomise_bn(m, seed):
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.3)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.2)
    return m.eval()


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = TF.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = TF.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)  # Shape -> Gather -> Concat -> Reshape in the TorchScript exporter
        return self.fc2(torch.relu(self.fc1(x)))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class ResNetTiny(nn.Module):
    """Stem, two residual blocks (one strided with a 1x1 projection), global average pool, linear."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = ResBlock(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(2 * width)
        self.proj = nn.Conv2d(width, 2 * width, 1, stride=2, bias=False)
        self.block2 = ResBlock(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.block1(self.stem(x))
        x = torch.relu(self.down_bn(self.down(x)) + self.proj(x))
        x = self.block2(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class DepthwiseSeparable(nn.Module):
    """MobileNet-style: depthwise 3x3 (stride 2, dilation) + pointwise 1x1, ReLU6, BN."""

    def __init__(self):
        super().__init__()
        self.dw1 = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.pw1 = nn.Conv2d(4, 8, 1)
        self.dw2 = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=8)
        self.pw2 = nn.Conv2d(8, 6, 1)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = TF.relu6(self.pw1(TF.relu6(self.bn1(self.dw1(x)))))
        x = TF.relu6(self.pw2(self.dw2(x)))
        return self.head(TF.adaptive_avg_pool2d(x, 1).flatten(1))


class SubPixel(nn.Module):
    """Transposed conv (stride 2, output_padding) + conv + PixelShuffle."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 6, 3, stride=2, padding=1, output_padding=1)
        self.conv = nn.Conv2d(6, 8, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return torch.tanh(self.shuffle(self.conv(torch.relu(self.up(x)))))


class UNetSkip(nn.Module):
    """Downsample, nearest upsample, concat with the skip, conv; sigmoid output."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(2, 4, 3, padding=1)
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.dec = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        e = TF.leaky_relu(self.enc(x), 0.1)
        m = torch.relu(self.mid(TF.max_pool2d(e, 2)))
        u = TF.interpolate(m, scale_factor=2, mode="nearest")
        return torch.sigmoid(self.dec(torch.cat([e, u], 1)))


class GeluHead(nn.Module):
    """Exact and tanh GELU, padding (reflect, asymmetric zero), avg / max pools with ceil_mode,
    an input normalisation by constants, adaptive max pool, dropout, log_softmax."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, (3, 2), stride=(2, 1))
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16, 7)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = TF.pad(x, (1, 1, 1, 1), mode="reflect")
        x = TF.gelu(self.bn(self.conv1(x)))
        x = TF.pad(x, (0, 1, 1, 0))  # asymmetric zero padding
        x = TF.gelu(self.conv2(x), approximate="tanh")
        x = TF.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        a = TF.adaptive_avg_pool2d(x, 1).flatten(1)
        m = TF.adaptive_max_pool2d(x, 1).flatten(1)
        return torch.log_softmax(self.fc(self.drop(torch.cat([a, m], 1))), dim=1)


NETS = {
    "lenet": (LeNet, (1, 28, 28)),
    "resnet": (ResNetTiny, (3, 16, 16)),
    "depthwise": (DepthwiseSeparable, (4, 12, 12)),
    "subpixel": (SubPixel, (3, 5, 6)),
    "unet": (UNetSkip, (2, 8, 8)),
    "gelu_head": (GeluHead, (3, 11, 10)),
}


def build(name, seed=0):
    cls, shape = NETS[name]
    torch.manual_seed(seed)
    return _randomise_bn(cls(), seed), shape


def export(module, shape, path, dynamo, opset):
    """torch.onnx.export with a dynamic batch, by either exporter."""
    import warnings

    x = torch.rand((2,) + shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (x,), path, input_names=["x"], output_names=["y"], opset_version=opset,
                              dynamo=True, dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
        else:
            torch.onnx.export(module, (x,), path, input_names=["x"], output_names=["y"], opset_version=opset,
                              dynamo=False, dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return path
