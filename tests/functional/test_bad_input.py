"""Bad arguments to pyconvnet.functional raise ValueError / TypeError whose message
names the offending argument; nothing crashes or silently computes garbage.

Each case is (call, exception type, regex the message must match). Geometry so
large that int64 arithmetic overflows runs in a subprocess: a crash there is a
test failure, not the end of the test session.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import pyconvnet
from pyconvnet import functional as F

from _helpers import F32, F64, run_python

rng = np.random.default_rng(0)


def a(*shape, dtype=F64):
    return rng.standard_normal(shape).astype(dtype)


X = a(2, 4, 6, 6)
W = a(6, 2, 3, 3)
X32 = X.astype(F32)
IDX = np.zeros((2, 4, 3, 3), np.int64)
READ_ONLY_2x5 = np.zeros((2, 5))
READ_ONLY_2x5.setflags(write=False)

CASES = {
    # ------------------------------------------------------------ conv2d
    "conv2d x float32, weight float64": (lambda: F.conv2d(X32, W, groups=2), TypeError, r"weight.*float32"),
    "conv2d bias dtype": (lambda: F.conv2d(X, W, a(6, dtype=F32), groups=2), TypeError, r"^bias"),
    "conv2d int x": (lambda: F.conv2d(X.astype(np.int64), W, groups=2), TypeError, r"^x:.*int64"),
    "conv2d float16 x": (lambda: F.conv2d(X.astype(np.float16), W, groups=2), TypeError, r"^x:.*float16"),
    "conv2d bool x": (lambda: F.conv2d(X > 0, W, groups=2), TypeError, r"^x:"),
    "conv2d int weight": (lambda: F.conv2d(X, W.astype(np.int32), groups=2), TypeError, r"^weight"),
    "conv2d x rank 2": (lambda: F.conv2d(X[0, 0], W), ValueError, r"^x:"),
    "conv2d x rank 5": (lambda: F.conv2d(X[None], W, groups=2), ValueError, r"^x:"),
    "conv2d weight rank 3": (lambda: F.conv2d(X, W[0], groups=2), ValueError, r"^weight"),
    "conv2d channel mismatch": (lambda: F.conv2d(X, a(6, 3, 3, 3)), ValueError, r"^weight.*4 channels"),
    "conv2d groups do not divide C_in": (lambda: F.conv2d(a(1, 3, 5, 5), a(6, 1, 3, 3), groups=2), ValueError,
                                         r"^groups"),
    "conv2d groups do not divide C_out": (lambda: F.conv2d(X, a(5, 2, 3, 3), groups=2), ValueError, r"^groups"),
    "conv2d groups 0": (lambda: F.conv2d(X, W, groups=0), ValueError, r"^groups"),
    "conv2d groups float": (lambda: F.conv2d(X, W, groups=2.0), TypeError, r"^groups"),
    "conv2d kernel larger than padded input": (lambda: F.conv2d(X, a(6, 2, 9, 3), groups=2, padding=1), ValueError,
                                               r"^weight.*larger than the padded input"),
    "conv2d dilated kernel larger": (lambda: F.conv2d(X, W, groups=2, dilation=3), ValueError, r"^weight.*dilation"),
    "conv2d stride 0": (lambda: F.conv2d(X, W, groups=2, stride=0), ValueError, r"^stride"),
    "conv2d stride negative": (lambda: F.conv2d(X, W, groups=2, stride=(1, -2)), ValueError, r"^stride"),
    "conv2d stride float": (lambda: F.conv2d(X, W, groups=2, stride=1.5), TypeError, r"^stride"),
    "conv2d stride triple": (lambda: F.conv2d(X, W, groups=2, stride=(1, 1, 1)), ValueError, r"^stride"),
    "conv2d dilation 0": (lambda: F.conv2d(X, W, groups=2, dilation=0), ValueError, r"^dilation"),
    "conv2d negative padding": (lambda: F.conv2d(X, W, groups=2, padding=-1), ValueError, r"^padding"),
    "conv2d negative padding pair": (lambda: F.conv2d(X, W, groups=2, padding=(0, -1)), ValueError, r"^padding"),
    "conv2d same with stride 2": (lambda: F.conv2d(X, W, groups=2, padding="same", stride=2), ValueError,
                                  r"^padding.*same"),
    "conv2d unknown padding string": (lambda: F.conv2d(X, W, groups=2, padding="full"), ValueError, r"^padding"),
    # caught in Python, naming padding, before the C++ check of the 32-bit BLAS size
    "conv2d huge padding": (lambda: F.conv2d(a(1, 1, 2, 2), a(1, 1, 1, 1), padding=100000), ValueError,
                            r"^padding: 100000 makes the output 200002x200002 for x \(1, 1, 2, 2\), and the im2col "
                            r"buffer \(1 x 40000800004 = 40000800004 values\) is more than the 32-bit BLAS takes"),
    "conv2d_backward huge padding": (
        lambda: F.conv2d_backward(a(1, 1, 3, 3), a(1, 1, 2, 2), a(1, 1, 1, 1), padding=(3, 2**30)), ValueError,
        r"^padding: \(3, 1073741824\) makes"),
    "conv2d bias shape": (lambda: F.conv2d(X, W, a(5), groups=2), ValueError, r"^bias"),
    "conv2d bias 2-D": (lambda: F.conv2d(X, W, a(6, 1), groups=2), ValueError, r"^bias"),
    # ------------------------------------------------------------ conv2d_backward
    "conv2d_backward grad_out shape": (lambda: F.conv2d_backward(a(2, 6, 4, 5), X, W, groups=2), ValueError,
                                       r"^grad_out"),
    "conv2d_backward grad_out channels": (lambda: F.conv2d_backward(a(2, 5, 4, 4), X, W, groups=2), ValueError,
                                          r"^grad_out"),
    "conv2d_backward grad_out dtype": (lambda: F.conv2d_backward(a(2, 6, 4, 4, dtype=F32), X, W, groups=2),
                                       TypeError, r"^grad_out"),
    "conv2d_backward unbatched x, 4-D grad_out": (lambda: F.conv2d_backward(a(1, 6, 4, 4), X[0], W, groups=2),
                                                  ValueError, r"^grad_out"),
    "conv2d_backward weight dtype": (lambda: F.conv2d_backward(a(2, 6, 4, 4, dtype=F32), X32, W, groups=2),
                                     TypeError, r"^weight"),
    "conv2d_backward bad stride": (lambda: F.conv2d_backward(a(2, 6, 4, 4), X, W, groups=2, stride=0), ValueError,
                                   r"^stride"),
    # ------------------------------------------------------------ conv_transpose2d
    "conv_transpose2d weight dtype": (lambda: F.conv_transpose2d(X32, a(4, 3, 3, 3)), TypeError, r"^weight"),
    "conv_transpose2d int x": (lambda: F.conv_transpose2d(X.astype(int), a(4, 3, 3, 3)), TypeError, r"^x:"),
    "conv_transpose2d channel mismatch": (lambda: F.conv_transpose2d(X, a(3, 3, 3, 3)), ValueError, r"^weight"),
    "conv_transpose2d weight rank": (lambda: F.conv_transpose2d(X, a(4, 3, 3)), ValueError, r"^weight"),
    "conv_transpose2d x rank": (lambda: F.conv_transpose2d(X[0, 0], a(4, 3, 3, 3)), ValueError, r"^x:"),
    "conv_transpose2d groups": (lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), groups=3), ValueError, r"^groups"),
    "conv_transpose2d groups 0": (lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), groups=0), ValueError, r"^groups"),
    "conv_transpose2d output_padding >= stride and dilation": (
        lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), stride=2, output_padding=2), ValueError, r"^output_padding"),
    "conv_transpose2d output_padding with stride 1": (
        lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), output_padding=(0, 1)), ValueError, r"^output_padding"),
    "conv_transpose2d negative output_padding": (
        lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), output_padding=-1), ValueError, r"^output_padding"),
    "conv_transpose2d padding leaves no output": (lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), padding=5), ValueError,
                                                  r"^padding"),
    "conv_transpose2d padding same": (lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), padding="same"), ValueError,
                                      r"^padding"),
    "conv_transpose2d stride 0": (lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), stride=0), ValueError, r"^stride"),
    "conv_transpose2d dilation 0": (lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), dilation=0), ValueError,
                                    r"^dilation"),
    "conv_transpose2d bias shape": (lambda: F.conv_transpose2d(X, a(4, 3, 3, 3), a(4)), ValueError, r"^bias"),
    "conv_transpose2d_backward grad_out shape": (
        lambda: F.conv_transpose2d_backward(a(2, 3, 8, 9), X, a(4, 3, 3, 3)), ValueError, r"^grad_out"),
    "conv_transpose2d_backward grad_out dtype": (
        lambda: F.conv_transpose2d_backward(a(2, 3, 8, 8, dtype=F32), X, a(4, 3, 3, 3)), TypeError, r"^grad_out"),
    "conv_transpose2d_backward bad output_padding": (
        lambda: F.conv_transpose2d_backward(a(2, 3, 9, 9), X, a(4, 3, 3, 3), output_padding=1), ValueError,
        r"^output_padding"),
    # ------------------------------------------------------------ unfold / fold
    "unfold int x": (lambda: F.unfold(X.astype(np.int16), 2), TypeError, r"^x:"),
    "unfold float16 x": (lambda: F.unfold(X.astype(np.float16), 2), TypeError, r"^x:"),
    "unfold x rank 2": (lambda: F.unfold(X[0, 0], 2), ValueError, r"^x:"),
    "unfold kernel larger": (lambda: F.unfold(X, 7), ValueError, r"^kernel_size"),
    "unfold kernel 0": (lambda: F.unfold(X, 0), ValueError, r"^kernel_size"),
    "unfold stride 0": (lambda: F.unfold(X, 2, stride=0), ValueError, r"^stride"),
    "unfold dilation 0": (lambda: F.unfold(X, 2, dilation=(1, 0)), ValueError, r"^dilation"),
    "unfold negative padding": (lambda: F.unfold(X, 2, padding=-1), ValueError, r"^padding"),
    "unfold huge padding": (lambda: F.unfold(a(1, 1, 2, 2), 1, padding=100000), ValueError,
                            r"^padding: 100000 makes the output .*column buffer.*32-bit BLAS"),
    "conv2d list x, float64 weight": (lambda: F.conv2d(X.tolist(), W, groups=2), TypeError,
                                      r"^weight: expected dtype float32"),
    "fold cols rank 4": (lambda: F.fold(a(1, 4, 9, 1), (4, 4), 2), ValueError, r"^cols"),
    "fold cols rank 1": (lambda: F.fold(a(4), (4, 4), 2), ValueError, r"^cols"),
    "fold cols int": (lambda: F.fold(np.zeros((1, 4, 9), int), (4, 4), 2), TypeError, r"^cols"),
    "fold channels not divisible by kh*kw": (lambda: F.fold(a(1, 5, 9), (4, 4), 2), ValueError, r"^cols"),
    "fold wrong number of blocks": (lambda: F.fold(a(1, 4, 8), (4, 4), 2), ValueError, r"^cols"),
    "fold output_size 0": (lambda: F.fold(a(1, 4, 9), (0, 4), 2), ValueError, r"^output_size"),
    "fold kernel larger than output": (lambda: F.fold(a(1, 25, 1), (4, 4), 5), ValueError, r"^kernel_size"),
    "fold stride 0": (lambda: F.fold(a(1, 4, 9), (4, 4), 2, stride=0), ValueError, r"^stride"),
    # ------------------------------------------------------------ max_pool2d
    "max_pool2d int x": (lambda: F.max_pool2d(X.astype(np.int32), 2), TypeError, r"^x:"),
    "max_pool2d float16 x": (lambda: F.max_pool2d(X.astype(np.float16), 2), TypeError, r"^x:"),
    "max_pool2d x rank 2": (lambda: F.max_pool2d(X[0, 0], 2), ValueError, r"^x:"),
    "max_pool2d padding > kernel/2": (lambda: F.max_pool2d(X, 3, padding=2), ValueError, r"^padding.*half"),
    "max_pool2d padding > kernel/2 (one axis)": (lambda: F.max_pool2d(X, (2, 4), padding=(2, 0)), ValueError,
                                                 r"^padding"),
    "max_pool2d negative padding": (lambda: F.max_pool2d(X, 2, padding=-1), ValueError, r"^padding"),
    "max_pool2d kernel larger than input": (lambda: F.max_pool2d(X, 7), ValueError, r"^kernel_size"),
    "max_pool2d dilated window larger": (lambda: F.max_pool2d(X, 3, dilation=3), ValueError, r"^kernel_size"),
    "max_pool2d kernel 0": (lambda: F.max_pool2d(X, 0), ValueError, r"^kernel_size"),
    "max_pool2d stride 0": (lambda: F.max_pool2d(X, 2, stride=0), ValueError, r"^stride"),
    "max_pool2d dilation 0": (lambda: F.max_pool2d(X, 2, dilation=0), ValueError, r"^dilation"),
    "max_pool2d kernel float": (lambda: F.max_pool2d(X, 2.0), TypeError, r"^kernel_size"),
    # ------------------------------------------------------------ max_pool2d_backward
    "max_pool2d_backward index too large": (lambda: F.max_pool2d_backward(a(2, 4, 3, 3), IDX + 36, X.shape),
                                            ValueError, r"^indices"),
    "max_pool2d_backward index below -1": (lambda: F.max_pool2d_backward(a(2, 4, 3, 3), IDX - 2, X.shape),
                                           ValueError, r"^indices"),
    "max_pool2d_backward huge unsigned index": (
        lambda: F.max_pool2d_backward(a(2, 4, 3, 3), np.full(IDX.shape, 2**63, np.uint64), X.shape), ValueError,
        r"^indices"),
    "max_pool2d_backward float indices": (lambda: F.max_pool2d_backward(a(2, 4, 3, 3), IDX.astype(F64), X.shape),
                                          TypeError, r"^indices"),
    "max_pool2d_backward indices shape": (lambda: F.max_pool2d_backward(a(2, 4, 3, 3), IDX[..., :2], X.shape),
                                          ValueError, r"^indices"),
    "max_pool2d_backward grad_out batch": (lambda: F.max_pool2d_backward(a(1, 4, 3, 3), IDX[:1], X.shape),
                                           ValueError, r"^grad_out"),
    "max_pool2d_backward grad_out rank": (lambda: F.max_pool2d_backward(a(4, 3, 3), IDX[0], X.shape), ValueError,
                                          r"^grad_out"),
    "max_pool2d_backward grad_out int": (lambda: F.max_pool2d_backward(IDX, IDX, X.shape), TypeError, r"^grad_out"),
    "max_pool2d_backward input_shape rank": (lambda: F.max_pool2d_backward(a(2, 4, 3, 3), IDX, (2, 4, 6, 6, 1)),
                                             ValueError, r"^input_shape"),
    "max_pool2d_backward input_shape negative": (lambda: F.max_pool2d_backward(a(2, 4, 3, 3), IDX, (2, 4, -6, 6)),
                                                 ValueError, r"^input_shape"),
    "max_pool2d_backward input_shape not a tuple": (lambda: F.max_pool2d_backward(a(2, 4, 3, 3), IDX, 36),
                                                    TypeError, r"^input_shape"),
    # ------------------------------------------------------------ avg_pool2d
    "avg_pool2d int x": (lambda: F.avg_pool2d(X.astype(np.uint8), 2), TypeError, r"^x:"),
    "avg_pool2d x rank 5": (lambda: F.avg_pool2d(X[None], 2), ValueError, r"^x:"),
    "avg_pool2d padding > kernel/2": (lambda: F.avg_pool2d(X, 2, padding=(0, 2)), ValueError, r"^padding.*half"),
    "avg_pool2d kernel larger than input": (lambda: F.avg_pool2d(X, (2, 9)), ValueError, r"^kernel_size"),
    "avg_pool2d stride negative": (lambda: F.avg_pool2d(X, 2, stride=-1), ValueError, r"^stride"),
    "avg_pool2d_backward grad_out shape": (lambda: F.avg_pool2d_backward(a(2, 4, 3, 4), X.shape, 2), ValueError,
                                           r"^grad_out"),
    "avg_pool2d_backward grad_out int": (lambda: F.avg_pool2d_backward(IDX, X.shape, 2), TypeError, r"^grad_out"),
    "avg_pool2d_backward input_shape rank": (lambda: F.avg_pool2d_backward(a(6, 6), (6, 6), 2), ValueError,
                                             r"^input_shape"),
    "avg_pool2d_backward padding": (lambda: F.avg_pool2d_backward(a(2, 4, 4, 4), X.shape, 2, padding=2), ValueError,
                                    r"^padding"),
    # ------------------------------------------------------------ batch_norm
    "batch_norm x rank 1": (lambda: F.batch_norm(a(5), a(5), a(5) ** 2), ValueError, r"^x:"),
    "batch_norm int x": (lambda: F.batch_norm(X.astype(int), None, None, training=True), TypeError, r"^x:"),
    "batch_norm float16 x": (lambda: F.batch_norm(X.astype(np.float16), None, None, training=True), TypeError,
                             r"^x:"),
    "batch_norm weight shape": (lambda: F.batch_norm(X, None, None, a(3), training=True), ValueError, r"^weight"),
    "batch_norm bias shape": (lambda: F.batch_norm(X, None, None, None, a(4, 1), training=True), ValueError,
                              r"^bias"),
    "batch_norm weight dtype": (lambda: F.batch_norm(X, None, None, a(4, dtype=F32), training=True), TypeError,
                                r"^weight"),
    "batch_norm eval without running_mean": (lambda: F.batch_norm(X, None, a(4) ** 2), ValueError, r"^running_mean"),
    "batch_norm eval without running_var": (lambda: F.batch_norm(X, a(4), None), ValueError, r"^running_var"),
    "batch_norm eval running_mean shape": (lambda: F.batch_norm(X, a(3), a(4) ** 2), ValueError, r"^running_mean"),
    "batch_norm eval running_var shape": (lambda: F.batch_norm(X, a(4), a(5) ** 2), ValueError, r"^running_var"),
    "batch_norm eval running_mean dtype": (lambda: F.batch_norm(X, a(4, dtype=F32), a(4) ** 2), TypeError,
                                           r"^running_mean"),
    "batch_norm training running_mean shape": (lambda: F.batch_norm(X, a(3), None, training=True), ValueError,
                                               r"^running_mean"),
    "batch_norm training running_var shape": (lambda: F.batch_norm(X, a(4), a(2, 2) ** 2, training=True), ValueError,
                                              r"^running_var"),
    "batch_norm training running_mean a list": (lambda: F.batch_norm(X, [0.0] * 4, None, training=True), TypeError,
                                                r"^running_mean"),
    "batch_norm training running_var integer": (lambda: F.batch_norm(X, None, np.ones(4, int), training=True),
                                                TypeError, r"^running_var"),
    "batch_norm training read-only running_mean": (
        lambda: F.batch_norm(X, np.broadcast_to(np.zeros(1), (4,)), None, training=True), TypeError,
        r"^running_mean"),
    "batch_norm training one value per channel (N, C)": (lambda: F.batch_norm(a(1, 3), None, None, training=True),
                                                         ValueError, r"^x:.*1 value per channel"),
    "batch_norm training one value per channel (N, C, 1, 1)": (
        lambda: F.batch_norm(a(1, 3, 1, 1), a(3), np.ones(3), training=True), ValueError, r"^x:.*per channel"),
    "batch_norm training empty batch": (lambda: F.batch_norm(a(0, 3), None, None, training=True), ValueError, r"^x:"),
    "batch_norm eps 0": (lambda: F.batch_norm(X, None, None, training=True, eps=0.0), ValueError, r"^eps"),
    "batch_norm eps negative": (lambda: F.batch_norm(X, a(4), np.ones(4), eps=-1e-5), ValueError, r"^eps"),
    "batch_norm_backward grad_out shape": (lambda: F.batch_norm_backward(a(2, 4, 6, 5), X, None, a(4), a(4)),
                                           ValueError, r"^grad_out"),
    "batch_norm_backward grad_out dtype": (lambda: F.batch_norm_backward(X32, X, None, a(4), a(4)), TypeError,
                                           r"^grad_out"),
    "batch_norm_backward mean shape": (lambda: F.batch_norm_backward(X, X, None, a(3), a(4)), ValueError, r"^mean"),
    "batch_norm_backward invstd shape": (lambda: F.batch_norm_backward(X, X, None, a(4), a(5)), ValueError,
                                         r"^invstd"),
    "batch_norm_backward invstd missing": (lambda: F.batch_norm_backward(X, X, None, a(4), None), ValueError,
                                           r"^invstd"),
    "batch_norm_backward weight shape": (lambda: F.batch_norm_backward(X, X, a(2), a(4), a(4)), ValueError,
                                         r"^weight"),
    "batch_norm_backward x rank": (lambda: F.batch_norm_backward(a(4), a(4), None, a(4), a(4)), ValueError, r"^x:"),
    # ------------------------------------------------------------ linear
    "linear in_features mismatch": (lambda: F.linear(a(3, 5), a(2, 4)), ValueError, r"^x:.*last dimension"),
    "linear weight rank": (lambda: F.linear(a(3, 5), a(2, 5, 1)), ValueError, r"^weight"),
    "linear weight dtype": (lambda: F.linear(a(3, 5, dtype=F32), a(2, 5)), TypeError, r"^weight"),
    "linear int x": (lambda: F.linear(np.ones((3, 5), int), a(2, 5)), TypeError, r"^x:"),
    "linear float16 x": (lambda: F.linear(np.ones((3, 5), np.float16), a(2, 5)), TypeError, r"^x:"),
    "linear scalar x": (lambda: F.linear(np.float64(1.0), a(2, 1)), ValueError, r"^x:"),
    "linear bias shape": (lambda: F.linear(a(3, 5), a(2, 5), a(3)), ValueError, r"^bias"),
    "linear_backward grad_out shape": (lambda: F.linear_backward(a(3, 3), a(3, 5), a(2, 5)), ValueError,
                                       r"^grad_out"),
    "linear_backward grad_out dtype": (lambda: F.linear_backward(a(3, 2, dtype=F32), a(3, 5), a(2, 5)), TypeError,
                                       r"^grad_out"),
    "linear_backward in_features mismatch": (lambda: F.linear_backward(a(3, 2), a(3, 4), a(2, 5)), ValueError,
                                             r"^x:"),
    # ------------------------------------------------------------ gradients written into caller buffers
    "linear_backward grad_weight_out shape": (lambda: F.linear_backward(a(3, 2), a(3, 5), a(2, 5),
                                                                        grad_weight_out=np.zeros((5, 2))),
                                              ValueError, r"^grad_weight_out: expected shape \(2, 5\)"),
    "linear_backward grad_weight_out dtype": (lambda: F.linear_backward(a(3, 2), a(3, 5), a(2, 5),
                                                                        grad_weight_out=np.zeros((2, 5), F32)),
                                              TypeError, r"^grad_weight_out: expected a float64 array"),
    "linear_backward grad_bias_out list": (lambda: F.linear_backward(a(3, 2), a(3, 5), a(2, 5), grad_bias_out=[0, 0]),
                                           TypeError, r"^grad_bias_out"),
    "linear_backward grad_weight_out read-only": (lambda: F.linear_backward(a(3, 2), a(3, 5), a(2, 5),
                                                                            grad_weight_out=READ_ONLY_2x5),
                                                  ValueError, r"^grad_weight_out: expected a writeable"),
    "conv2d_backward grad_weight_out non-contiguous": (
        lambda: F.conv2d_backward(a(2, 6, 4, 4), X, W, groups=2, grad_weight_out=np.zeros((6, 2, 3, 6))[..., ::2]),
        ValueError, r"^grad_weight_out: expected a writeable C-contiguous"),
    "conv2d_backward grad_weight_out is the weight": (
        lambda: F.conv2d_backward(a(2, 6, 4, 4), X, W, groups=2, grad_weight_out=W), ValueError,
        r"^grad_weight_out: must not overlap"),
    "conv2d_backward grad_bias_out shape": (
        lambda: F.conv2d_backward(a(2, 6, 4, 4), X, W, groups=2, grad_bias_out=np.zeros(5)), ValueError,
        r"^grad_bias_out: expected shape \(6,\)"),
    # the bindings alone check the buffers too
    "core linear_backward grad_weight_out": (
        lambda: pyconvnet._core.linear_backward(a(3, 2), a(3, 5), a(2, 5), True, np.zeros((2, 4))), ValueError,
        r"^grad_weight_out"),
    "core conv2d_backward grad_bias_out": (
        lambda: pyconvnet._core.conv2d_backward(a(2, 6, 4, 4), X, W, (1, 1), (0, 0, 0, 0), (1, 1), 2, True, True, True,
                                                None, np.zeros(7)), ValueError, r"^grad_bias_out"),
    # ------------------------------------------------------------ threads
    "set_num_threads 0": (lambda: pyconvnet.set_num_threads(0), ValueError, r"set_num_threads.*>= 1"),
    "set_num_threads negative": (lambda: pyconvnet.set_num_threads(-3), ValueError, r"set_num_threads"),
    "set_num_threads float": (lambda: pyconvnet.set_num_threads(2.0), TypeError, r"set_num_threads"),
    "set_num_threads bool": (lambda: pyconvnet.set_num_threads(True), TypeError, r"set_num_threads"),
    "set_num_threads str": (lambda: pyconvnet.set_num_threads("2"), TypeError, r"set_num_threads"),
}


@pytest.fixture(autouse=True)
def keep_threads():
    n = pyconvnet.get_num_threads()
    yield
    pyconvnet.set_num_threads(n)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_naming_the_argument(case):
    call, exc, match = CASES[case]
    with pytest.raises(exc, match=match):
        call()


API = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward", "unfold", "fold", "max_pool2d",
       "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "batch_norm", "batch_norm_backward", "linear",
       "linear_backward", "set_num_threads"]


@pytest.mark.parametrize("fn", API)
def test_cases_cover_every_function(fn):
    assert re.search(rf"(^| ){fn}( |$)", " ".join(CASES)), f"no bad-input case for {fn}"


def test_batch_norm_non_numeric_momentum_and_eps_name_the_argument():
    """The module contract (_args: 'errors name the argument, what it got and what was expected')
    also holds for the float parameters of batch_norm."""
    with pytest.raises((TypeError, ValueError), match=r"momentum"):
        F.batch_norm(X, np.zeros(4), np.ones(4), training=True, momentum="fast")
    with pytest.raises((TypeError, ValueError), match=r"eps"):
        F.batch_norm(X, np.zeros(4), np.ones(4), training=True, eps="small")


def test_failed_call_leaves_running_statistics_untouched():
    rm, rv = np.zeros(4), np.ones(4)
    with pytest.raises(ValueError):
        F.batch_norm(X, rm, rv[:3], training=True)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)


# ----------------------------------------------------------------------------- huge geometry
# Values near the int64 limit: the output-size arithmetic must not overflow into a
# "valid" small size (wrong shapes, out-of-bounds memory access) or loop for ages.
HUGE = {
    "unfold padding 2**31-1 (output plane of 2**64 elements wraps to 0)": (
        "F.unfold(np.zeros((1, 1, 2, 2)), 1, 1, 2**31 - 1, 1)", r"padding|kernel_size|too large|size"),
    "unfold dilation 2**62 (dilated span wraps to 1)": (
        "F.unfold(np.zeros((1, 1, 3, 3)), 5, 2**62)", r"kernel_size|dilation"),
    "fold dilation 2**62": ("F.fold(np.zeros((1, 25, 9)), (3, 3), 5, 2**62)", r"kernel_size|dilation"),
    "max_pool2d dilation 2**60 (window span wraps to 1)": (
        "F.max_pool2d(np.zeros((1, 1, 3, 3)), 17, 1, 0, 2**60)", r"kernel_size|dilation"),
    "max_pool2d dilation 2**62": ("F.max_pool2d(np.zeros((1, 1, 3, 3), np.float32), 5, 1, 0, 2**62)",
                                  r"kernel_size|dilation"),
    "max_pool2d dilation 2**63-1": ("F.max_pool2d(np.zeros((1, 1, 3, 3)), 3, 1, 0, 2**63 - 1)",
                                    r"kernel_size|dilation"),
    "max_pool2d kernel 2**63-1 with dilation 2": ("F.max_pool2d(np.zeros((1, 1, 4, 5)), (2**63 - 1, 3), (3, 1), 0, "
                                                  "(2, 1))", r"kernel_size|dilation"),
    "conv_transpose2d dilation 2**62": (
        "F.conv_transpose2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 5, 5)), dilation=2**62)",
        r"dilation|padding|output|size|large"),
    "conv2d padding 2**62": ("F.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), padding=2**62)",
                             r"padding|large|size"),
    "conv2d stride 2**70": ("F.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), stride=2**70)", r"stride"),
}


@pytest.mark.parametrize("case", sorted(HUGE))
def test_huge_geometry_raises_instead_of_crashing(case):
    """Either a correct result or a ValueError/TypeError naming an argument; never a crash,
    never a silently wrong output size."""
    expr, match = HUGE[case]
    code = ("import numpy as np\nfrom pyconvnet import functional as F\n"
            f"y = {expr}\nprint('RESULT-SHAPE', y.shape)\n")
    r = run_python(code, timeout=60)
    assert r.returncode is not None, f"{case}: {r.stderr}"
    assert r.returncode >= 0, f"{case}: killed by signal {-r.returncode} (crash)\n{r.stderr[-2000:]}"
    if r.returncode == 0:
        pytest.fail(f"{case}: returned an output of shape {r.stdout.split('RESULT-SHAPE')[-1].strip()} "
                    f"instead of raising (int64 overflow in the output-size formula)")
    errors = re.findall(r"^(\w+(?:Error|Exception)): (.*)$", r.stderr, re.M)
    assert errors, f"{case}: {r.stderr[-2000:]}"
    kind, msg = errors[-1]
    assert kind in ("ValueError", "TypeError"), f"{case}: {kind}: {msg}"
    assert re.search(match, msg), f"{case}: message does not name the argument: {kind}: {msg}"


def test_max_pool2d_huge_padding_does_not_hang():
    """kernel 2**40 with padding 2**39 is legal (padding <= kernel/2) and gives a 3x3 output of the 2x2
    input: it must be computed (or refused) promptly, not by stepping through the padding one row at a time."""
    r = run_python("import numpy as np\nfrom pyconvnet import functional as F\n"
                   "print(F.max_pool2d(np.arange(4.0).reshape(1, 1, 2, 2), 2**40, 1, 2**39).ravel().tolist())",
                   timeout=10)
    assert r.returncode is not None, "max_pool2d(kernel 2**40, padding 2**39) ran for more than 10 s"
    assert r.returncode >= 0, f"crashed: {r.stderr[-2000:]}"
    if r.returncode == 0:
        assert r.stdout.strip() == str([3.0] * 9)
    else:
        assert re.search(r"^(ValueError|TypeError): .*(kernel_size|padding)", r.stderr, re.M), r.stderr[-2000:]


def test_column_buffer_too_large_for_the_input_names_x():
    from pyconvnet.functional.conv import _check_columns

    with pytest.raises(ValueError, match=r"^x: an input of shape \(1, 9, 50000, 50000\) makes the im2col buffer"):
        _check_columns(9, (50000, 50000), (50000, 50000), 0, (1, 9, 50000, 50000))
    _check_columns(9, (100, 100), (100, 100), 0, (1, 9, 100, 100))  # fits: no error


def test_python_lists_become_float32_not_float64():
    """A list is not an array yet: it becomes float32 (torch's default dtype, the weights'),
    or the dtype of x for the other arguments, instead of float64 and a dtype error about x."""
    w32 = W.astype(F32)
    y = F.conv2d(X32.tolist(), w32, groups=2)
    assert y.dtype == F32
    np.testing.assert_array_equal(y, F.conv2d(X32, w32, groups=2))
    y64 = F.conv2d(X, W.tolist(), groups=2)  # the weight list takes x's float64
    assert y64.dtype == F64
    np.testing.assert_array_equal(y64, F.conv2d(X, W, groups=2))
    # a list of NumPy float64 arrays keeps the dtype the caller chose
    assert F.relu([np.ones(2), np.ones(2)]).dtype == F64
    with pytest.raises(TypeError, match=r"^x: expected an array of numbers, got a list"):
        F.relu([["a", "b"]])
