"""Model zoo: the networks of the seed documents, built from pyconvnet.layers.

Every builder takes ``seed`` (weights are reproducible) and ``dtype``; inputs
are NCHW float images in [0, 1]. ``MODELS`` maps CLI names to builders and the
input each expects.
"""
from __future__ import annotations

import numpy as np

from . import layers as L

__all__ = ["mlp3", "lenet5", "keras_cnn", "overfit_cnn", "cifar_cnn", "robust_lenet5", "relaxed_net", "grid_cnn", "matched_mlp",
           "matched_hidden", "airbench_net", "arith_cnn", "arith_lstm", "arith_model2", "dcgan_generator",
           "dcgan_discriminator", "smile_cnn", "MODELS", "build"]


def mlp3(hidden=256, in_shape=(1, 28, 28), classes=10, seed=0, dtype=np.float32):
    """The Kyoto Univ. exercise's three-layer network: 784 -> M sigmoid -> 10 (softmax in the loss).
    Weights N(0, 1/fan_in) as the course prescribes."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(in_shape))
    return L.Sequential(
        L.Flatten(),
        L.Linear(d, hidden, init="normal_fan_in", rng=rng, dtype=dtype),
        L.Sigmoid(),
        L.Linear(hidden, classes, init="normal_fan_in", rng=rng, dtype=dtype),
    )


def lenet5(in_channels=1, classes=10, seed=0, dtype=np.float32, pad_input=2):
    """LeNet-5 (LeCun et al. 1998) on 32x32 input: 28x28 MNIST digits are padded by
    ``pad_input`` = 2 in the first convolution, which is the same as padding the image.
    C1 6@5x5 -> S2 -> C3 16@5x5 -> S4 -> C5 120@5x5 -> F6 84 -> 10, ReLU and max pooling."""
    rng = np.random.default_rng(seed)
    he = dict(init="kaiming_normal", rng=rng, dtype=dtype)
    return L.Sequential(
        L.Conv2d(in_channels, 6, 5, padding=pad_input, **he), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(6, 16, 5, **he), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(16, 120, 5, **he), L.ReLU(),
        L.Flatten(),
        L.Linear(120, 84, **he), L.ReLU(),
        L.Linear(84, classes, **he),
    )


def keras_cnn(in_channels=1, size=28, classes=10, dropout=True, seed=0, dtype=np.float32):
    """The Kyoto Univ. exercise's Keras CNN (§6.3): Conv32(3x3, same) - Conv64(3x3, same) - MaxPool 2x2 - Dense128 - Dense10,
    ReLU; with ``dropout`` the Keras example's 0.25 after pooling and 0.5 after Dense128."""
    rng = np.random.default_rng(seed)
    he = dict(init="kaiming_normal", rng=rng, dtype=dtype)
    layers = [L.Conv2d(in_channels, 32, 3, padding="same", **he), L.ReLU(),
              L.Conv2d(32, 64, 3, padding="same", **he), L.ReLU(), L.MaxPool2d(2)]
    if dropout:
        layers.append(L.Dropout(0.25, seed=seed + 1))
    layers += [L.Flatten(), L.Linear(64 * (size // 2) ** 2, 128, **he), L.ReLU()]
    if dropout:
        layers.append(L.Dropout(0.5, seed=seed + 2))
    layers.append(L.Linear(128, classes, **he))
    return L.Sequential(*layers)


def overfit_cnn(regularised=False, in_channels=1, size=28, classes=10, hidden=256, seed=0, dtype=np.float32):
    """The Kyoto Univ. exercise's B1-(1) pair (deliberate over-fitting): the §6.3 Keras CNN with a
    wider dense layer, Conv32(3x3, same) - Conv64(3x3, same) - MaxPool 2x2 - Dense ``hidden`` -
    Dense ``classes``, ReLU, about 3.2M weights (``hidden`` 256 on 28x28) -- large for a training
    subset of a thousand images.

    ``regularised``: its twin with batch norm after each convolution and the dense layer (the
    convolutions and the dense layer then without bias: the norm's shift replaces it) and the
    Keras example's dropout, 0.25 after pooling and 0.5 after the dense layer. Weight decay and
    augmentation, the rest of the regularisation, belong to the training (optimizer, fit)."""
    rng = np.random.default_rng(seed)
    he = dict(init="kaiming_normal", rng=rng, dtype=dtype)
    bias = not regularised
    layers = [L.Conv2d(in_channels, 32, 3, padding="same", bias=bias, **he)]
    if regularised:
        layers.append(L.BatchNorm2d(32, dtype=dtype))
    layers += [L.ReLU(), L.Conv2d(32, 64, 3, padding="same", bias=bias, **he)]
    if regularised:
        layers.append(L.BatchNorm2d(64, dtype=dtype))
    layers += [L.ReLU(), L.MaxPool2d(2)]
    if regularised:
        layers.append(L.Dropout(0.25, seed=seed + 1))
    layers += [L.Flatten(), L.Linear(64 * (size // 2) ** 2, hidden, bias=bias, **he)]
    if regularised:
        layers.append(L.BatchNorm1d(hidden, dtype=dtype))
    layers.append(L.ReLU())
    if regularised:
        layers.append(L.Dropout(0.5, seed=seed + 2))
    layers.append(L.Linear(hidden, classes, **he))
    return L.Sequential(*layers)


def cifar_cnn(in_channels=3, classes=10, width=32, seed=0, dtype=np.float32):
    """A small VGG-style net for 32x32 colour images: three blocks of
    [conv3x3-BN-ReLU] x 2 + max pool (width, 2*width, 4*width channels), dropout
    growing with depth, then a 10-way linear layer on the 4x4 maps."""
    rng = np.random.default_rng(seed)
    he = dict(init="kaiming_normal", rng=rng, dtype=dtype)
    layers, c = [], in_channels
    for i, (w, p) in enumerate(((width, 0.1), (2 * width, 0.2), (4 * width, 0.3))):
        for _ in range(2):
            layers += [L.Conv2d(c, w, 3, padding=1, bias=False, **he), L.BatchNorm2d(w, dtype=dtype), L.ReLU()]
            c = w
        layers += [L.MaxPool2d(2), L.Dropout(p, seed=seed + 10 + i)]
    layers += [L.Flatten(), L.Linear(c * 16, classes, **he)]
    return L.Sequential(*layers)


def robust_lenet5(in_channels=1, classes=10, seed=0, dtype=np.float32, mix_channels=16):
    """The translation-robust LeNet-5 of the LeNet-5 translation report (Tohoku Univ.) on 28x28 digits (padded to 32x32 in C1).

    The LeNet-5 trunk runs as usual up to C5 (120 maps of 1x1); those 120 values are
    upsampled back to C1's 28x28 grid, concatenated with the 6 C1 maps (before
    pooling, the U-Net-like skip), mixed by a 1x1 pointwise convolution and then
    classified by two fully connected layers, as in LeNet-5's tail. The seed notes the
    pointwise width can be small; ``mix_channels`` (16) and a 2x2 max pool before the
    fully connected layers keep the tail at 16*14*14 inputs."""
    rng = np.random.default_rng(seed)
    he = dict(init="kaiming_normal", rng=rng, dtype=dtype)
    nodes = [
        ("c1", L.Conv2d(in_channels, 6, 5, padding=2, **he), ["input"]),
        ("r1", L.ReLU(), ["c1"]),
        ("s2", L.MaxPool2d(2), ["r1"]),
        ("c3", L.Conv2d(6, 16, 5, **he), ["s2"]),
        ("r3", L.ReLU(), ["c3"]),
        ("s4", L.MaxPool2d(2), ["r3"]),
        ("c5", L.Conv2d(16, 120, 5, **he), ["s4"]),
        ("r5", L.ReLU(), ["c5"]),
        ("up", L.Upsample(size=(28, 28)), ["r5"]),
        ("cat", L.Concat(), ["r1", "up"]),
        ("pw", L.Conv2d(126, mix_channels, 1, **he), ["cat"]),
        ("rp", L.ReLU(), ["pw"]),
        ("sp", L.MaxPool2d(2), ["rp"]),
        ("flat", L.Flatten(), ["sp"]),
        ("f6", L.Linear(mix_channels * 14 * 14, 84, **he), ["flat"]),
        ("r6", L.ReLU(), ["f6"]),
        ("out", L.Linear(84, classes, **he), ["r6"]),
    ]
    return L.Graph(nodes, inputs=["input"], outputs=["out"])


def relaxed_net(size, channels=8, k=9, seed=0, r_std=1e-3, classes=10, dtype=np.float32):
    """The relaxed receptive field paper's network: RelaxedConv(1 -> channels, n -> n, k slots,
    centre slot fixed to the identity) - ReLU - Linear(channels*n -> classes), n = size*size."""
    rng = np.random.default_rng(seed)
    n = size * size
    return L.Sequential(L.RelaxedConv(1, channels, n, n, k, centre=True, r_std=r_std, rng=rng, dtype=dtype),
                        L.ReLU(), L.Flatten(), L.Linear(channels * n, classes, rng=rng, dtype=dtype))


def grid_cnn(size, channels=8, seed=0, classes=10, dtype=np.float32):
    """The CNN with the relaxed network's channel budget: Conv2d(1 -> channels, 3x3, 'same') -
    ReLU - Linear(channels*size*size -> classes)."""
    rng = np.random.default_rng(seed)
    return L.Sequential(L.Conv2d(1, channels, 3, padding=1, init="kaiming_normal", rng=rng, dtype=dtype), L.ReLU(),
                        L.Flatten(), L.Linear(channels * size * size, classes, rng=rng, dtype=dtype))


def matched_hidden(size, channels=8, classes=10):
    """The hidden width of an MLP with as many parameters as :func:`grid_cnn`."""
    n = size * size
    cnn = channels * 9 + channels + channels * n * classes + classes
    return max(1, round((cnn - classes) / (n + 1 + classes)))


def matched_mlp(size, hidden, seed=0, classes=10, dtype=np.float32):
    """The paper's "Linear" network: an MLP n -> hidden -> classes (ReLU)."""
    rng = np.random.default_rng(seed)
    n = size * size
    return L.Sequential(L.Flatten(), L.Linear(n, hidden, init="kaiming_normal", rng=rng, dtype=dtype), L.ReLU(),
                        L.Linear(hidden, classes, rng=rng, dtype=dtype))


# name -> (builder, one-line description); build() maps a data set geometry to builder arguments.
MODELS = {
    "mlp3": (mlp3, "the Kyoto Univ. exercise's 784-M-10 sigmoid network"),
    "lenet5": (lenet5, "LeNet-5 (LeCun 1998), ReLU + max pooling"),
    "keras_cnn": (keras_cnn, "Kyoto Univ. exercise §6.3: Conv32-Conv64-MaxPool-Dense128-Dense10 (+ Keras dropout)"),
    "cifar_cnn": (cifar_cnn, "VGG-style 6 conv + BN + dropout for 32x32 colour images"),
    "robust_lenet5": (robust_lenet5, "the LeNet-5 translation report: LeNet-5 with upsampled C5 + C1 skip and a pointwise conv"),
}


def build(name, in_shape, classes=10, seed=0, **kw):
    """Build zoo model ``name`` for inputs of shape (C, H, W)."""
    if name not in MODELS:
        raise ValueError(f"model: unknown model {name!r}; choose from {', '.join(MODELS)}")
    c, h, w = in_shape
    if name == "mlp3":
        return mlp3(in_shape=in_shape, classes=classes, seed=seed, **kw)
    if name == "lenet5":
        # 28x28 digits are padded to LeNet's 32x32; 32x32 images are used as they are.
        return lenet5(in_channels=c, classes=classes, seed=seed, pad_input=(32 - h) // 2, **kw)
    if name == "keras_cnn":
        return keras_cnn(in_channels=c, size=h, classes=classes, seed=seed, **kw)
    if name == "cifar_cnn":
        if (h, w) != (32, 32):
            raise ValueError(f"model: cifar_cnn expects 32x32 images, got {h}x{w}")
        return cifar_cnn(in_channels=c, classes=classes, seed=seed, **kw)
    if (h, w) != (28, 28):
        raise ValueError(f"model: robust_lenet5 expects 28x28 images, got {h}x{w}")
    return robust_lenet5(in_channels=c, classes=classes, seed=seed, **kw)


def airbench_net(widths=(64, 256, 256), batchnorm_momentum=0.6, seed=0, dtype=np.float32):
    """The airbench94 CIFAR-10 network (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a
    single GPU", arXiv 2404.00498): a 2x2 whitening convolution 3 -> 24 (its weights are set
    from data by ``init.patch_whitening``; bias trained), GELU, then three blocks of
    [3x3 conv (no bias) -> 2x2 max pool -> BN -> GELU -> 3x3 conv -> BN -> GELU] of
    ``widths`` channels, a 3x3 max pool (global on the 3x3 maps), Linear(-> 10, no bias)
    and the logits times 1/9. Batch norm: no scale (gamma = 1), learned shift, eps 1e-12,
    running statistics r = batchnorm_momentum * r + (1 - batchnorm_momentum) * batch.
    3x3 convs start as the identity on their first C_in filters (dirac), the rest torch's
    default U(+-1/sqrt(fan_in)), as the linear layer. Input (N, 3, 32, 32), normalised."""
    from . import init as I

    rng = np.random.default_rng(seed)

    def dirac_init(shape, rng_, *, fan_in=None, fan_out=None, dtype=np.float32):
        w = I.uniform_fan_in(shape, rng_, fan_in=fan_in, fan_out=fan_out, dtype=dtype)
        k = min(shape[0], shape[1])
        w[:k] = I.dirac((k,) + tuple(shape[1:]), dtype=dtype)
        return w

    def conv(cin, cout):
        return L.Conv2d(cin, cout, 3, padding=1, bias=False, init=dirac_init, rng=rng, dtype=dtype)

    def norm(c):
        return L.BatchNorm2d(c, eps=1e-12, momentum=1.0 - batchnorm_momentum, scale=False, dtype=dtype)

    def block(cin, cout):
        return L.Sequential(("conv1", conv(cin, cout)), ("pool", L.MaxPool2d(2)), ("norm1", norm(cout)),
                            ("act1", L.GELU()), ("conv2", conv(cout, cout)), ("norm2", norm(cout)), ("act2", L.GELU()))

    w1, w2, w3 = (int(w) for w in widths)
    return L.Sequential(
        ("whiten", L.Conv2d(3, 24, 2, bias=True, init="zeros", rng=rng, dtype=dtype)), ("act0", L.GELU()),
        ("block1", block(24, w1)), ("block2", block(w1, w2)), ("block3", block(w2, w3)),
        ("pool", L.MaxPool2d(3)), ("flatten", L.Flatten()),
        ("head", L.Linear(w3, 10, bias=False, init="uniform_fan_in", rng=rng, dtype=dtype)),
        ("scale", L.ConstantArith("mul", np.float32(1.0 / 9.0), dtype=dtype)))


# ---------------------------------------------------------------- the arithmetic-sequence task
# The CNN+LSTM paper ("Consideration of weight parameter characteristics by comparing network
# structures in deep learning"): two digit images, the first two terms a, b of an arithmetic
# sequence, in; the third term 2b - a (-9 .. 18: 28 classes) out.
ARITH_CLASSES = 28


def arith_cnn(in_channels=1, size=28, classes=10, filters=16, dropout=0.25, seed=0, dtype=np.float32):
    """The CNN+LSTM paper's digit CNN (its Fig. 2, as far as its text gives it): Conv2d(16 filters,
    3x3) - ReLU - MaxPool 2x2 - Dropout(0.25) - Flatten - Linear(-> 10). Named children: conv1 is
    the first-layer convolution whose filters the paper compares."""
    rng = np.random.default_rng(seed)
    he = dict(init="kaiming_normal", rng=rng, dtype=dtype)
    side = (size - 2) // 2
    return L.Sequential(("conv1", L.Conv2d(in_channels, filters, 3, **he)), ("relu1", L.ReLU()),
                        ("pool1", L.MaxPool2d(2)), ("drop1", L.Dropout(dropout, seed=seed + 1)),
                        ("flatten", L.Flatten()), ("fc", L.Linear(filters * side * side, classes, **he)))


def arith_lstm(input_size, hidden=64, classes=ARITH_CLASSES, seed=0, dtype=np.float32):
    """The CNN+LSTM paper's LSTM: a sequence (N, 2, input_size) (the two terms) -> LSTM(hidden),
    last step -> Linear(-> 28 classes, the third term 2b - a shifted by 9)."""
    rng = np.random.default_rng(seed)
    return L.Sequential(("lstm", L.LSTM(input_size, hidden, rng=rng, dtype=dtype)),
                        ("fc", L.Linear(hidden, classes, init="uniform_fan_in", rng=rng, dtype=dtype)))


def arith_model2(hidden=64, classes=ARITH_CLASSES, filters=16, dropout=0.25, softmax=True, seed=0,
                 dtype=np.float32):
    """The CNN+LSTM paper's model-2, one network trained end to end: inputs ``a`` and ``b``
    (N, 1, 28, 28) -> cnn1 / cnn2 (:func:`arith_cnn`, 10 outputs each) -> softmax (or, with
    ``softmax=False``, the 10 logits as they are) -> stacked into the sequence (N, 2, 10) ->
    :func:`arith_lstm` (-> 28 logits)."""
    cnn1 = arith_cnn(filters=filters, dropout=dropout, seed=seed, dtype=dtype)
    cnn2 = arith_cnn(filters=filters, dropout=dropout, seed=seed + 100, dtype=dtype)
    nodes = [("cnn1", cnn1, ["a"]), ("cnn2", cnn2, ["b"])]
    ins = ["cnn1", "cnn2"]
    if softmax:
        nodes += [("p1", L.Softmax(), ["cnn1"]), ("p2", L.Softmax(), ["cnn2"])]
        ins = ["p1", "p2"]
    nodes += [("seq", L.Stack(axis=1), ins),
              ("rnn", arith_lstm(10, hidden, classes, seed=seed + 200, dtype=dtype), ["seq"])]
    return L.Graph(nodes, inputs=["a", "b"], outputs=["rnn"])
def _normal(std):
    """An initialiser drawing N(0, std^2) (the DCGAN paper's N(0, 0.02^2) for every weight)."""
    def init(shape, rng, *, fan_in=None, fan_out=None, dtype=np.float32):
        return (rng.standard_normal(shape) * std).astype(dtype)
    return init


def dcgan_generator(z_dim=100, width=64, out_channels=1, size=28, seed=0, dtype=np.float32):
    """The DCGAN generator (Radford et al., "Unsupervised representation learning with deep
    convolutional generative adversarial networks"; the Kyoto Univ. exercise §6.6) for
    ``size`` x ``size`` images (size divisible by 4):
    z (N, z_dim) -> Linear(z_dim -> 2w * s * s, no bias) -> BN -> ReLU -> (2w, s, s), s = size / 4
    -> ConvTranspose 4x4 stride 2 (-> w, 2s x 2s, no bias) -> BN -> ReLU
    -> ConvTranspose 4x4 stride 2 (-> out_channels, size x size) -> tanh: images in [-1, 1].
    No pooling or upsampling layers (the transposed convolutions learn it), batch norm
    everywhere but the output, weights N(0, 0.02^2) as the paper."""
    if size % 4:
        raise ValueError(f"size: expected a multiple of 4, got {size}")
    rng = np.random.default_rng(seed)
    w2, s = 2 * int(width), size // 4
    kw = dict(init=_normal(0.02), rng=rng, dtype=dtype)
    return L.Sequential(
        ("project", L.Linear(z_dim, w2 * s * s, bias=False, **kw)), ("bn0", L.BatchNorm1d(w2 * s * s, dtype=dtype)),
        ("relu0", L.ReLU()), ("reshape", L.Reshape((w2, s, s))),
        ("deconv1", L.ConvTranspose2d(w2, int(width), 4, stride=2, padding=1, bias=False, **kw)),
        ("bn1", L.BatchNorm2d(int(width), dtype=dtype)), ("relu1", L.ReLU()),
        ("deconv2", L.ConvTranspose2d(int(width), out_channels, 4, stride=2, padding=1, **kw)),
        ("tanh", L.Tanh()))


def dcgan_discriminator(in_channels=1, width=64, size=28, negative_slope=0.2, seed=0, dtype=np.float32):
    """The DCGAN discriminator (Radford et al.; the Kyoto Univ. exercise §6.6): strided
    convolutions instead of pooling, LeakyReLU(0.2), batch norm but on the input layer:
    x (N, C, size, size) in [-1, 1] -> Conv 4x4 stride 2 (-> w) -> LeakyReLU
    -> Conv 4x4 stride 2 (-> 2w, no bias) -> BN -> LeakyReLU -> Linear(-> 1): one logit per
    image (D(x) = sigmoid(logit), the probability that x is real)."""
    if size % 4:
        raise ValueError(f"size: expected a multiple of 4, got {size}")
    rng = np.random.default_rng(seed)
    w, s = int(width), size // 4
    kw = dict(init=_normal(0.02), rng=rng, dtype=dtype)
    return L.Sequential(
        ("conv1", L.Conv2d(in_channels, w, 4, stride=2, padding=1, **kw)), ("lrelu1", L.LeakyReLU(negative_slope)),
        ("conv2", L.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=False, **kw)),
        ("bn2", L.BatchNorm2d(2 * w, dtype=dtype)), ("lrelu2", L.LeakyReLU(negative_slope)),
        ("flatten", L.Flatten()), ("logit", L.Linear(2 * w * s * s, 1, **kw)))


def smile_cnn(in_channels=3, classes=2, width=16, seed=0, dtype=np.float32):
    """A small CNN for the Kyoto Univ. exercise's face images (§6.5 B2, 218x178 RGB; any size
    of at least 32x32): the §6.3 network's Dense layer would need 64*109*89*128 = 79M weights at
    this size, so the maps are shrunk early instead: Conv 5x5 stride 2 (w) - BN - ReLU - MaxPool 2,
    then three blocks [Conv 3x3 (2w, 4w, 4w) - BN - ReLU - MaxPool 2], a global average pool and
    Linear(4w -> classes). About 39M multiply-adds a 218x178 image at w = 16."""
    rng = np.random.default_rng(seed)
    he = dict(init="kaiming_normal", rng=rng, dtype=dtype)
    w = int(width)
    layers = [L.Conv2d(in_channels, w, 5, stride=2, padding=2, bias=False, **he), L.BatchNorm2d(w, dtype=dtype),
              L.ReLU(), L.MaxPool2d(2)]
    c = w
    for out in (2 * w, 4 * w, 4 * w):
        layers += [L.Conv2d(c, out, 3, padding=1, bias=False, **he), L.BatchNorm2d(out, dtype=dtype), L.ReLU(),
                   L.MaxPool2d(2)]
        c = out
    layers += [L.GlobalAvgPool2d(), L.Flatten(), L.Linear(c, classes, **he)]
    return L.Sequential(*layers)
