"""``python -m bench.onnx``: an imported network, ours vs ONNX Runtime vs torch.

A ResNet-style CNN for 32x32 images (stem, three stages of two residual blocks with batch
norm, 16-32-64 channels, global average pool, linear: ResNet-20's layout with 2 blocks per
stage) is built in torch, put in eval mode with non-trivial batch-norm statistics and
exported by ``torch.onnx.export`` (TorchScript exporter, opset 17: it folds every batch
norm into its convolution). The same file is then

* imported by ``pyconvnet.onnx.load`` and run by ``Graph.forward(x, training=False)``,
* run by ONNX Runtime (CPU provider, ``intra_op_num_threads`` = threads, graph optimisations on),
* compared with the torch module itself (eager, ``torch.no_grad``, ``torch.set_num_threads``),

at batch 1 and 64 and 1 and 2 threads. As every bench row: validate first (each contender's
logits within 1e-4 of the largest |logit| of ours), then warm up and time, medians of repeats
(bench.timing.measure). Results: ``bench/results/bench-onnx.json`` and ``.md`` (ratios are
contender / ours: > 1 means pyconvnet is faster).

    python -m bench.onnx                 # full: 7 repeats
    python -m bench.onnx --repeats 3 --batches 1 --threads 1 --out /tmp/b
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np

from .timing import LoadMeter, Threads, available_cores, measure

TOL = 1e-4
FULL = dict(repeats=7, min_repeat_s=0.05, warmup_s=0.2, budget_s=12.0)


def resnet(torch, width=16, classes=10, blocks=2, seed=0):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.short is None else self.short(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            layers, c = [], width
            for i, w in enumerate((width, 2 * width, 4 * width)):
                for j in range(blocks):
                    layers.append(Block(c, w, 2 if (i and not j) else 1))
                    c = w
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(c, classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))

    torch.manual_seed(seed)
    net = Net()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.onnx", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--batches", default="1,64", help="comma-separated batch sizes (default 1,64)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (default 7)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                   help="output directory (default bench/results/)")
    args = p.parse_args(argv)
    try:
        args.thread_counts = ([int(t) for t in args.threads.split(",")] if args.threads
                              else sorted({1, min(2, available_cores())}))
        args.batch_sizes = [int(b) for b in args.batches.split(",")]
    except ValueError:
        p.error("--threads / --batches: expected comma-separated ints")
    if min(args.thread_counts) < 1 or min(args.batch_sizes) < 1 or (args.repeats is not None and args.repeats < 1):
        p.error("--threads, --batches and --repeats must be positive")
    return args


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    import onnxruntime as ort
    import torch

    import pyconvnet
    from pyconvnet import onnx as pox

    from . import machine

    cfg = dict(FULL)
    if args.repeats is not None:
        cfg["repeats"] = args.repeats
    net = resnet(torch)
    tmp = tempfile.mkdtemp(prefix="bench-onnx-")
    path = os.path.join(tmp, "resnet.onnx")
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(2, 3, 32, 32),), path, input_names=["x"], output_names=["y"],
                          opset_version=17, dynamo=False, dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    t0 = time.perf_counter()
    ours = pox.load(path)
    load_s = time.perf_counter() - t0
    kinds = {}
    for _, layer in ours._children():
        kinds[type(layer).__name__] = kinds.get(type(layer).__name__, 0) + 1
    threads = Threads(torch)
    rows = []
    rng = np.random.default_rng(0)
    for th in args.thread_counts:
        threads.set(th)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = th, 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for batch in args.batch_sizes:
            x = rng.random((batch, 3, 32, 32)).astype(np.float32)
            xt = torch.from_numpy(x)
            fns = {"ours": lambda x=x: ours.forward(x, training=False),
                   "onnxruntime": lambda x=x, sess=sess: sess.run(None, {"x": x})[0]}

            def torch_fn(xt=xt):
                with torch.no_grad():
                    return net(xt).numpy()

            fns["torch"] = torch_fn
            # 1. validate against ours
            outs = {k: np.array(f(), copy=True) for k, f in fns.items()}
            scale = max(1.0, float(np.abs(outs["ours"]).max()))
            row = {"batch": batch, "threads": th, "contenders": {}}
            for name, y in outs.items():
                err = float(np.abs(y - outs["ours"]).max() / scale) if name != "ours" else \
                    float(np.abs(outs["ours"] - outs["torch"]).max() / scale)
                row["contenders"][name] = {"max_rel_err": err, "validated": err <= TOL,
                                           "validated_against": "torch" if name == "ours" else "ours"}
            # 2. time
            for name, fn in fns.items():
                ent = row["contenders"][name]
                if not ent["validated"]:
                    ent["status"] = "invalid"
                    continue
                time.sleep(0.2 if th > 1 else 0.02)
                meter = LoadMeter()
                ent["time"] = measure(fn, cfg["repeats"], cfg["min_repeat_s"], cfg["warmup_s"], cfg["budget_s"])
                ent["foreign_load_cores"] = meter.cores()
                ent["status"] = "ok"
                ent["images_per_s"] = batch / ent["time"]["median_s"]
            log(f"batch {batch:3d}, {th} thread(s): " + ", ".join(
                f"{k} {v['time']['median_s'] * 1e3:.3g} ms" if "time" in v else f"{k} {v['status']}"
                for k, v in row["contenders"].items()))
            rows.append(row)
    threads.restore()
    res = {"bench": "onnx", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": machine.describe(torch), "onnxruntime": ort.__version__, "torch": torch.__version__,
           "pyconvnet_threads_default": pyconvnet.get_num_threads(), "model": "ResNet-style 3x2 blocks, 16-32-64, "
           "32x32 input, exported by torch.onnx (TorchScript, opset 17, BN folded)", "imported_layers": kinds,
           "load_s": load_s, "params": ours.num_params(), "config": cfg, "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench-onnx.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(os.path.join(args.out, "bench-onnx.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


def markdown(res):
    lines = [f"# Imported network: pyconvnet vs ONNX Runtime vs torch ({res['date']})", "",
             f"{res['model']}; {res['params']:,} parameters, imported as {res['imported_layers']} in "
             f"{res['load_s']:.2f} s. ONNX Runtime {res['onnxruntime']}, torch {res['torch']}. Ratios: contender "
             f"time / ours (> 1: pyconvnet is faster). Medians of {res['config']['repeats']} repeats.", "",
             "| batch | threads | ours ms | ONNX Runtime ms | torch ms | ORT ÷ ours | torch ÷ ours |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        c = r["contenders"]
        t = {k: (v["time"]["median_s"] if "time" in v else None) for k, v in c.items()}

        def ms(k, t=t, c=c):
            return f"{t[k] * 1e3:.3g}" if t[k] else c[k].get("status", "—")

        def ratio(k, t=t):
            return f"{t[k] / t['ours']:.2f}×" if t[k] and t["ours"] else "—"

        lines.append(f"| {r['batch']} | {r['threads']} | {ms('ours')} | {ms('onnxruntime')} | {ms('torch')} | "
                     f"{ratio('onnxruntime')} | {ratio('torch')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
