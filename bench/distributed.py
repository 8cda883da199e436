"""Data-parallel training on this machine, and its scaling on paper: ``python -m bench.distributed``.

Measures, for LeNet-5 (global batch 64, SGD) and the Keras CNN (batch 32, AdaDelta, its
dropout on) on random MNIST-shaped data: the training step's time and images/s with
1 process x 1 thread, 1 process x 2 threads and 2 processes x 1 thread (``mpiexec -n 2``,
pyconvnet.distributed: one fused Allreduce of all gradients per step), the Allreduce's
time per step as the training loop sees it (with the wait for the slower rank) and on
its own (back-to-back Allreduces of the same buffer after a barrier), and its bytes.

From those, on paper: the efficiency of N nodes on 10 and 100 Gbit/s links, a ring
allreduce moving 2 (N-1)/N x bytes per rank in 2 (N-1) messages, so a step costs
t_compute + 2 (N-1)/N x bytes / bandwidth + 2 (N-1) x latency (no overlap of the
reduction with backward: pyconvnet reduces after backward). Weak scaling keeps the
batch per node (the model's default batch on each node, t_compute the faster of the
1-process steps); strong scaling splits the default global batch over the N nodes (t_compute / N).

Writes bench/results/distributed.json and distributed.md (``--out`` to change)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {"lenet5": dict(batch=64, optimizer="sgd", lr=0.05), "keras_cnn": dict(batch=32, optimizer="adadelta", lr=1.0)}
NODES = (2, 4, 8, 16, 32, 64)
LINKS_GBIT = (10, 100)


def _worker(a):
    from pyconvnet import losses, models, optim, set_num_threads
    from pyconvnet.training import no_input_grad, to_float

    comm = None
    if a.distributed:
        from pyconvnet.distributed import Communicator

        comm = Communicator(threads=a.threads)
    else:
        set_num_threads(a.threads)
    cfg = MODELS[a.model]
    model = models.build(a.model, (1, 28, 28), seed=0)
    opt = {"sgd": optim.SGD, "adadelta": optim.AdaDelta}[cfg["optimizer"]](model.parameters(), lr=cfg["lr"])
    loss = losses.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    b = cfg["batch"]
    x = rng.integers(0, 256, (8 * b, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 8 * b)
    model.train()
    times = []
    with no_input_grad(model):
        for step in range(a.warmup + a.steps):
            if step == a.warmup and comm is not None:
                comm.reset_counters()
                comm.comm.Barrier()
            s = (step % 8) * b
            t0 = time.perf_counter()
            if comm is None:
                logits = model.forward(to_float(x[s:s + b]), training=True)
                loss.forward(logits, y[s:s + b])
                model.backward(loss.backward())
            else:
                lo, hi = comm.bounds(b)
                comm.train_step(model, loss, to_float(x[s + lo:s + hi]), y[s + lo:s + hi], lo, b)
            opt.step()
            if step >= a.warmup:
                times.append(time.perf_counter() - t0)
    out = {"model": a.model, "processes": 1 if comm is None else comm.size, "threads": a.threads if comm is None
           else comm.threads, "batch": b, "params": model.num_params(), "steps": a.steps,
           "step_s_median": float(np.median(times))}
    if comm is not None:
        from mpi4py import MPI

        out["step_s_median"] = comm.comm.allreduce(out["step_s_median"], op=MPI.MAX)  # the slower rank sets the pace
        out["allreduce_s_per_step_in_loop"] = comm.comm.allreduce(comm.allreduce_seconds / comm.allreduce_calls,
                                                                  op=MPI.SUM) / comm.size
        out["allreduce_bytes_per_step"] = comm.allreduce_bytes // comm.allreduce_calls
        alone = []
        for _ in range(a.steps):
            comm.comm.Barrier()
            t0 = time.perf_counter()
            comm.comm.Allreduce(MPI.IN_PLACE, comm._fused[1], op=MPI.SUM)
            alone.append(time.perf_counter() - t0)
        out["allreduce_s_alone_median"] = comm.comm.allreduce(float(np.median(alone)), op=MPI.MAX)
        if comm.rank != 0:
            return
    out["images_per_s"] = b / out["step_s_median"]
    print(json.dumps(out), flush=True)


def _run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    if r.returncode != 0:
        raise SystemExit(f"bench.distributed: {' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _mpiexec():
    near = Path(sys.executable).parent / "mpiexec"
    return str(near) if near.exists() else "mpiexec"


def _ring_s(nbytes, n, gbit, latency_s):
    return 2 * (n - 1) / n * nbytes / (gbit * 1e9 / 8) + 2 * (n - 1) * latency_s


def scaling(rows, latency_us):
    """Efficiency on paper of each model at NODES x LINKS_GBIT, from the measured rows."""
    out = []
    for model in MODELS:
        # a node's step: the faster single-process row (on a shared machine 2 threads can lose to 1)
        one = min((r for r in rows if r["model"] == model and r["processes"] == 1), key=lambda r: r["step_s_median"])
        two = next(r for r in rows if r["model"] == model and r["processes"] == 2)
        tc, nbytes = one["step_s_median"], two["allreduce_bytes_per_step"]
        for gbit in LINKS_GBIT:
            for n in NODES:
                ta = _ring_s(nbytes, n, gbit, latency_us * 1e-6)
                strong_tc = tc / n
                out.append({"model": model, "link_gbit": gbit, "nodes": n, "compute_s": tc, "allreduce_s": ta,
                            "weak_efficiency": tc / (tc + ta),
                            "strong_efficiency": strong_tc / (strong_tc + ta) if n <= one["batch"] else None})
    return out


def markdown(res):
    lat = res["latency_us"]
    lines = ["# pyconvnet.distributed on this machine", "",
             f"`python -m bench.distributed` ({res['machine']}, load average {res['loadavg_before']} before, "
             f"{res['loadavg_after']} after; {res['steps']} timed steps after {res['warmup']} warm-up steps, medians).",
             "", "| model (global batch) | processes x threads | step ms | images/s | Allreduce ms per step in the loop "
             "(share of the step) | Allreduce ms alone | bytes per step |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        ar = r.get("allreduce_s_per_step_in_loop")
        cells = (f"{ar * 1e3:.3f} ({ar / r['step_s_median'] * 100:.0f}%)", f"{r['allreduce_s_alone_median'] * 1e3:.3f}",
                 f"{r['allreduce_bytes_per_step']:,}") if ar is not None else ("—", "—", "—")
        lines.append(f"| {r['model']} ({r['batch']}) | {r['processes']} x {r['threads']} | "
                     f"{r['step_s_median'] * 1e3:.2f} | {r['images_per_s']:,.0f} | " + " | ".join(cells) + " |")
    lines += ["", f"On paper: ring allreduce, 2(N-1)/N x bytes / link bandwidth + 2(N-1) x {lat:g} µs latency per "
              "step, no overlap with backward. Weak: the default batch on every node (compute = the faster 1-process step "
              "above); "
              "strong: the default global batch split over N nodes (compute / N; — where a node would get < 1 image).",
              ""]
    for key, title in (("scaling", f"latency {lat:g} µs per message"),
                       ("scaling_bandwidth_only", "bandwidth only (latency 0)")):
        lines += [f"| model, {title} | link | " + " | ".join(f"N={n}" for n in NODES) + " |",
                  "|---|---|" + "---:|" * len(NODES)]
        for model in MODELS:
            for gbit in LINKS_GBIT:
                for kind in ("weak", "strong"):
                    cells = []
                    for n in NODES:
                        s = next(r for r in res[key] if r["model"] == model and r["link_gbit"] == gbit
                                 and r["nodes"] == n)
                        e = s[f"{kind}_efficiency"]
                        cells.append("—" if e is None else f"{e * 100:.0f}%")
                    lines.append(f"| {model} {kind} | {gbit} Gbit/s | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="lenet5", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=60, help="timed steps per configuration (default 60)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    p.add_argument("--latency-us", type=float, default=25.0,
                   help="per-message latency of the links on paper, µs (default 25: MPI over TCP/Ethernet)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    a = p.parse_args(argv)
    if a.worker:
        return _worker(a)
    from . import machine

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    env.pop("OMP_NUM_THREADS", None)
    base = [sys.executable, "-m", "bench.distributed", "--worker", "--steps", str(a.steps), "--warmup", str(a.warmup)]
    rows, load0 = [], machine.loadavg()
    for model in MODELS:
        for threads in (1, 2):
            rows.append(_run(base + ["--model", model, "--threads", str(threads)], env))
        rows.append(_run([_mpiexec(), "-n", "2"] + base + ["--model", model, "--distributed"], env))
    res = {"machine": f"{machine.describe()['cpu_model']}, {os.cpu_count()} cores", "loadavg_before": load0, "loadavg_after": machine.loadavg(),
           "steps": a.steps, "warmup": a.warmup, "latency_us": a.latency_us, "rows": rows}
    res["scaling"] = scaling(rows, a.latency_us)
    res["scaling_bandwidth_only"] = scaling(rows, 0.0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributed.json").write_text(json.dumps(res, indent=1))
    (out / "distributed.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
