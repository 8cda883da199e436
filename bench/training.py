"""Training-epoch rows: one epoch of a zoo model, pyconvnet vs the identical network in torch eager.

The hook is ``TRAINING_ROWS``: each entry names a ``pyconvnet.models`` model, its
batch size and optimizer. For every row and thread count each contender runs in a
fresh subprocess (``python -m bench.training --worker ...``) so that its peak RSS is its
own (VmHWM from /proc/self/status; ``getrusage`` ru_maxrss is recorded beside it, but
on Linux it carries the spawning parent's RSS across execve, see pyconvnet._process.peak_rss_mib): the worker holds a
random MNIST-shaped uint8 training set (60,000 x 1 x 28 x 28, like the real one),
converts each batch to float32 in [0, 1] as ``pyconvnet.training.fit`` does, warms
up, times a fixed number of forward + loss + backward + optimizer steps and scales
the mean step time to 60,000 samples.

Before timing, the parent validates each model once: pyconvnet and torch nets
with the same weights (copied in parameter order; dropout off) must agree on the
logits, the loss and every parameter gradient of one batch.

If ``pyconvnet.models`` cannot be imported the rows are reported as skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from .timing import wait_quiet


def _process_facts():
    """pyconvnet._process (a leaf module) loaded from its file, without importing the
    pyconvnet package: in the torch worker, pyconvnet's _core and OpenBLAS would count
    towards torch's peak RSS."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyconvnet", "_process.py")
    if not os.path.exists(path):  # benchmarking an installed pyconvnet: find its file without importing it
        spec = importlib.util.find_spec("pyconvnet")
        path = os.path.join(os.path.dirname(spec.origin), "_process.py")
    spec = importlib.util.spec_from_file_location("_pyconvnet_process", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_facts = _process_facts()
peak_rss_mib, ru_maxrss_mib = _facts.peak_rss_mib, _facts.ru_maxrss_mib

EPOCH = 60_000
TOL = 1e-4
BUSY_CORES = 0.3  # other processes using more CPU than this during a worker's timing: run it again once
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class TrainingRow:
    model: str
    batch: int
    optimizer: str   # sgd | adadelta
    lr: float
    batches: int      # timed steps in a full run
    batches_quick: int = 3

    @property
    def id(self):
        return f"train {self.model}"


# The hook: add a model here (its torch twin goes in torch_net below).
TRAINING_ROWS = [
    TrainingRow("mlp3", batch=100, optimizer="sgd", lr=0.01, batches=300),
    TrainingRow("lenet5", batch=64, optimizer="sgd", lr=0.05, batches=150),
    TrainingRow("keras_cnn", batch=32, optimizer="adadelta", lr=1.0, batches=60),
]


# ------------------------------------------------------------------ the two implementations
def ours_net(model, dropout=True):
    from pyconvnet import models

    kw = {} if model != "keras_cnn" else {"dropout": dropout}
    return models.build(model, (1, 28, 28), classes=10, seed=0, **kw)


def ours_optimizer(row, net):
    from pyconvnet import optim

    if row.optimizer == "sgd":
        return optim.SGD(net.parameters(), lr=row.lr)
    return optim.AdaDelta(net.parameters(), lr=row.lr, rho=0.95, eps=1e-6)


def torch_net(model, torch, dropout=True):
    """The same architectures as pyconvnet.models (see its docstrings)."""
    nn = torch.nn
    if model == "mlp3":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.Sigmoid(), nn.Linear(256, 10))
    if model == "lenet5":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    if model == "keras_cnn":
        layers = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                  nn.MaxPool2d(2)]
        if dropout:
            layers.append(nn.Dropout(0.25))
        layers += [nn.Flatten(), nn.Linear(64 * 14 * 14, 128), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers.append(nn.Linear(128, 10))
        return nn.Sequential(*layers)
    raise ValueError(f"no torch twin for model {model!r}")


def torch_optimizer(row, net, torch):
    if row.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=row.lr)
    return torch.optim.Adadelta(net.parameters(), lr=row.lr, rho=0.95, eps=1e-6)


def copy_weights(ours, tnet, torch):
    """Ours -> torch, parameter by parameter in order (shapes must agree)."""
    mine = list(ours.params.items())
    theirs = list(tnet.parameters())
    if len(mine) != len(theirs):
        raise ValueError(f"{len(mine)} pyconvnet parameters vs {len(theirs)} torch parameters")
    with torch.no_grad():
        for (name, p), t in zip(mine, theirs):
            if tuple(p.shape) != tuple(t.shape):
                raise ValueError(f"parameter {name}: pyconvnet {p.shape} vs torch {tuple(t.shape)}")
            t.copy_(torch.from_numpy(np.ascontiguousarray(p)))


def short_error(e, limit=300):
    msg = f"{type(e).__name__}: {e}"
    return msg if len(msg) <= limit else msg[:limit] + " ..."


def core_id():
    """sha256 prefix of the loaded _core (workers report it: the in-tree build can change mid-run)."""
    import hashlib

    from pyconvnet import _core

    with open(_core.__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def validate(row, torch) -> dict:
    """Same weights, one batch, dropout off: logits, loss and parameter gradients must agree."""
    from pyconvnet import losses

    rng = np.random.default_rng(7)
    x = rng.random((16, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    ours = ours_net(row.model, dropout=False)
    loss = losses.SoftmaxCrossEntropy()
    logits = ours.forward(x, training=True)
    lval = float(loss.forward(logits, y))
    ours.backward(loss.backward())
    if torch is None:
        ok = bool(np.all(np.isfinite(logits)) and math.isfinite(lval))
        return {"validated": ok, "against": None, "note": "torch not available: finite outputs only"}
    tnet = torch_net(row.model, torch, dropout=False)
    copy_weights(ours, tnet, torch)
    tl = tnet(torch.from_numpy(x))
    tloss = torch.nn.functional.cross_entropy(tl, torch.from_numpy(y.astype(np.int64)))
    tloss.backward()
    pairs = [("logits", logits, tl.detach().numpy()), ("loss", np.float64(lval), np.float64(tloss.item()))]
    pairs += [(f"grad {n}", g, t.grad.numpy()) for (n, g), t in zip(ours.grads.items(), tnet.parameters())]
    worst, bad = 0.0, None
    for name, a, b in pairs:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = float(np.max(np.abs(b))) or 1.0
        err = float(np.max(np.abs(a - b))) / scale
        if err > worst:
            worst = err
        if err > TOL and bad is None:
            bad = f"{name}: max error {err:.3g} of max |value|"
    out = {"validated": bad is None, "against": "torch (same weights, dropout off)", "max_rel_err": worst,
           "tol": TOL}
    if bad:
        out["error"] = bad
    return out


# ------------------------------------------------------------------ the worker (fresh process)
def worker(model, contender, threads, batches, warmup, warmup_s=0.0):
    row = next(r for r in TRAINING_ROWS if r.model == model)
    rss_start = peak_rss_mib()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (EPOCH, 1, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, EPOCH).astype(np.int64)
    order = rng.permutation(EPOCH)
    scale = np.float32(1.0 / 255.0)
    if contender == "ours":
        import pyconvnet
        from pyconvnet import losses

        pyconvnet.set_num_threads(threads)
        isa = pyconvnet.cpu_info()["isa"]  # PYCONVNET_ISA from the parent, else the best
        net = ours_net(model)
        # as fit() does (and torch, whose input tensor needs no grad): nothing consumes d(loss)/d(images)
        net.need_input_grad = False
        opt = ours_optimizer(row, net)
        loss = losses.SoftmaxCrossEntropy()
        if hasattr(net, "set_rng"):
            net.set_rng(np.random.default_rng(1))

        def step(idx):
            xb = images[idx].astype(np.float32) * scale
            logits = net.forward(xb, training=True)
            lv = float(loss.forward(logits, labels[idx]))
            net.backward(loss.backward())
            opt.step()
            return lv
    else:
        import torch

        isa = None
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        net = torch_net(model, torch)
        net.train()
        opt = torch_optimizer(row, net, torch)
        crit = torch.nn.CrossEntropyLoss()

        def step(idx):
            xb = torch.from_numpy(images[idx].astype(np.float32) * scale)
            out = net(xb)
            lt = crit(out, torch.from_numpy(labels[idx]))
            opt.zero_grad()
            lt.backward()
            opt.step()
            return lt.item()
    rss_setup = peak_rss_mib()
    stack = contextlib.ExitStack()
    if contender == "ours":
        # as fit() does: each step's arrays of >= 1 MiB reuse the blocks the last step
        # freed instead of fresh pages (LeNet-5 on a Zen 4: 1,144 page faults a step,
        # 5.4 -> 3.6 ms a step at 1 thread). torch's CPU allocator is plain malloc/free.
        from pyconvnet.memory import cached_allocations

        stack.enter_context(cached_allocations())
    nb = EPOCH // row.batch
    pos = 0

    def next_idx():
        nonlocal pos
        i = order[(pos % nb) * row.batch:(pos % nb + 1) * row.batch]
        pos += 1
        return i
    t_warm = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - t_warm < warmup_s:
        step(next_idx())
        done += 1
    from bench.timing import LoadMeter

    meter = LoadMeter()
    times, last = [], None
    for _ in range(batches):
        idx = next_idx()
        t0 = time.perf_counter()
        last = step(idx)
        times.append(time.perf_counter() - t0)
    stack.close()
    per_batch = sum(times) / len(times)
    chunks = [float(np.mean(c)) for c in np.array_split(np.array(times), min(5, len(times)))]
    return {
        "status": "ok" if last is not None and math.isfinite(last) else "invalid",
        "foreign_load_cores": meter.cores(),
        "final_loss": last,
        "batches_timed": batches,
        "warmup_batches": done,
        "per_batch_s": per_batch,
        "per_batch_median_s": float(np.median(times)),
        "chunk_means_s": chunks,
        "epoch_s": per_batch * EPOCH / row.batch,
        "epoch_s_min_chunk": min(chunks) * EPOCH / row.batch,
        "epoch_s_max_chunk": max(chunks) * EPOCH / row.batch,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_source": "VmHWM",
        "pyconvnet_isa": isa,
        "ru_maxrss_mib": ru_maxrss_mib(),
        "rss_after_imports_and_setup_mib": rss_setup,
        "rss_at_start_mib": rss_start,
        "rss_note": "includes the 47 MB uint8 MNIST-shaped training set",
        "pyconvnet_core_sha256_16": core_id() if contender == "ours" else None,
    }


def _spawn(row, contender, threads, quick):
    batches = row.batches_quick if quick else row.batches
    warmup = 1 if quick else 5
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    # NumPy's own OpenBLAS does no work in a training step (pyconvnet has its bundled one, torch
    # MKL), but with >1 thread its workers spin ~0.1 s after start-up, and meanwhile a 2-thread
    # OpenMP kernel on 2 cores runs ~10x slower: a start-up artifact that a real epoch amortises.
    env["OPENBLAS_NUM_THREADS"] = "1"
    import pyconvnet  # the worker must load the very pyconvnet this process benchmarks

    paths = [REPO, os.path.dirname(os.path.dirname(os.path.abspath(pyconvnet.__file__)))]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "bench.training", "--worker", "--model", row.model, "--contender", contender,
           "--threads", str(threads), "--batches", str(batches), "--warmup", str(warmup),
           "--warmup-s", "0.05" if quick else "0.5"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": "worker timed out after 600 s"}
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"status": "error", "error": f"worker exit {p.returncode}: {' / '.join(tail)}"[:400]}
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"status": "error", "error": f"worker printed no JSON: {p.stdout[-200:]!r}"}
    out["process_wall_s"] = wall
    return out


def run_rows(args, rx, have_torch, log):
    rows = [r for r in TRAINING_ROWS if rx is None or rx.search(r.id)]
    if not rows:
        return []
    try:
        import pyconvnet.models  # noqa: F401
        import pyconvnet.losses  # noqa: F401
        import pyconvnet.optim  # noqa: F401
    except ImportError as e:
        msg = f"pyconvnet.models / losses / optim not importable ({e}): training rows skipped"
        log(msg)
        return [{"id": r.id, "status": "skipped", "reason": msg} for r in rows]
    torch = None
    if have_torch:
        import torch
    out = []
    validation = {}
    for r in rows:
        try:
            validation[r.model] = validate(r, torch)
        except Exception as e:
            validation[r.model] = {"validated": False, "error": short_error(e)}
    # --quick: the first thread count only (each row costs two fresh processes)
    for n in args.thread_counts[:1] if args.quick else args.thread_counts:
        for r in rows:
            v = validation[r.model]
            row = {"id": r.id, "model": r.model, "batch": r.batch, "optimizer": r.optimizer, "lr": r.lr,
                   "threads": n, "epoch_samples": EPOCH, "validation": v, "status": "ok", "contenders": {}}
            if not v.get("validated"):
                row["status"] = "invalid"
                row["contenders"]["ours"] = {"status": "invalid", "error": v.get("error")}
            else:
                for name in ("ours", "torch"):
                    if name == "torch" and not have_torch:
                        row["contenders"]["torch"] = {"status": "skipped", "reason": "torch not available"}
                        continue
                    best = None
                    for attempt in range(1 if args.quick else 2):
                        if not args.quick:
                            wait_quiet(max_wait_s=15.0)
                        e = _spawn(r, name, n, args.quick)
                        e["takes"] = attempt + 1
                        load = e.get("foreign_load_cores")
                        if best is None or (e.get("status") == "ok" and load is not None
                                            and load < (best.get("foreign_load_cores") or 0)):
                            best = dict(e, takes=attempt + 1)
                        if e.get("status") != "ok" or load is None or load <= BUSY_CORES:
                            break
                    row["contenders"][name] = best
            out.append(row)
            c = row["contenders"]
            log(f"[threads={n}] {r.id}: " + " | ".join(
                f"{k} " + (f"{e['epoch_s']:.2f} s/epoch, peak RSS {e['peak_rss_mib']:.0f} MiB"
                           if e.get("status") == "ok" else f"{e.get('status')}: {e.get('error') or e.get('reason')}")
                for k, e in c.items()))
    return out


def _main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.training")
    p.add_argument("--worker", action="store_true", required=True)
    p.add_argument("--model", required=True, choices=[r.model for r in TRAINING_ROWS])
    p.add_argument("--contender", required=True, choices=("ours", "torch"))
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batches", type=int, required=True)
    p.add_argument("--warmup", type=int, default=5, help="at least this many warm-up steps")
    p.add_argument("--warmup-s", type=float, default=0.0, help="and at least this long")
    a = p.parse_args(argv)
    print(json.dumps(worker(a.model, a.contender, a.threads, a.batches, a.warmup, a.warmup_s)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
