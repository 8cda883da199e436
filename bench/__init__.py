"""pyconvnet benchmarks: ``python -m bench [--quick] [--threads 1,2] [--filter REGEX] [--out DIR]``.

Every row is validated before it is timed: each contender's output is compared
with pyconvnet.functional (and pyconvnet with PyTorch), then warmed up and timed.
Contenders: pyconvnet.functional, PyTorch CPU (torch.nn.functional + autograd),
a vectorised NumPy im2col implementation (bench/npimpl.py) and the naive loop
reference (pyconvnet.reference, timed on a slice and scaled). Results go to
--out as JSON (raw figures + machine description), Markdown and a PNG chart.
"""
