"""CIFAR-10 to 94% on the CPU: Keller Jordan's airbench94 recipe ("94% on CIFAR-10 in 3.29
seconds on a single GPU", arXiv 2404.00498; airbench94.py) in pyconvnet, float32.

``pyconvnet experiment cifar10-speedrun`` trains ``models.airbench_net`` and reports the
test accuracy with 6-view test-time augmentation, the wall time and where it went:

* network: a frozen 2x2 whitening conv (3 -> 24, ``init.patch_whitening`` of the first
  5000 training images; its bias trained for the first 3 epochs), GELU, three blocks of
  [conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU] (widths 64/256/256), a 3x3
  max pool, Linear(256 -> 10, no bias), logits x 1/9; BN with no scale, eps 1e-12,
  running-statistics momentum 0.4; 3x3 convs start as the identity (dirac);
* training: batch 1024 (the last partial batch dropped: 48 steps an epoch), 9.9 epochs =
  476 steps; NesterovSGD momentum 0.85 on the summed label-smoothed (0.2) cross-entropy,
  lr 11.5 / (1024 (1 + 1 / (1 - 0.85))), weight decay 0.0153 * 1024 / that scale
  coupled per group (weights: wd / lr; BN shifts: 64 x lr, wd / (64 lr)); lr multiplier
  0.2 -> 1 over the first 23% of steps, then -> 0.07; lookahead every 5 steps with
  decay 0.95^5 (t / T)^3 (BN statistics included), the slow weights kept at the end;
  reflect-pad-2 random crops and the alternating flip;
* test: 6 views (identity, mirror, two 1-pixel diagonal shifts and their mirrors,
  weights 1/4, 1/4, 1/8 x 4).

``--epochs`` and ``--widths`` give the accuracy-vs-time curve (airbench95: 15 epochs,
128,384,384, lr 10). ``--quick`` runs a few hundred images for a couple of steps (the test).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def lr_multiplier(step, total, warmup=0.23, start=0.2, end=0.07):
    """The airbench schedule: linear start -> 1 over int(warmup * total) steps, then 1 -> end."""
    w = int(total * warmup)
    if step < w:
        f = step / w
        return start * (1 - f) + f
    f = (step - w) / max(total - w, 1)
    return (1 - f) + end * f


def lookahead_decay(step, total):
    """0.95^5 (step / total)^3: the lookahead's pull back towards the slow weights."""
    return 0.95 ** 5 * (step / total) ** 3


def normalise(images):
    """uint8 (N, 3, H, W) -> float32, per-channel (x / 255 - mean) / std."""
    from ..data import normalize

    return normalize(images.astype(np.float32) * np.float32(1 / 255), CIFAR_MEAN, CIFAR_STD)


def param_groups(model, lr, wd, bias_scaler=64.0):
    """airbench's two groups: the BN shifts at bias_scaler x lr, everything trained else at lr,
    both with coupled decay wd / lr_group (so lr_t * decay is the same for both); the
    whitening weight is not trained."""
    norm, other = [], []
    for t in model.parameters():
        name = t[0]
        if name == "whiten.weight":
            continue
        (norm if ".norm" in name and name.endswith(".bias") else other).append(t)
    lr_b = lr * bias_scaler
    return [{"params": norm, "lr": lr_b, "weight_decay": wd / lr_b}, {"params": other, "lr": lr, "weight_decay": wd / lr}]


def batch_views(x, idx, flipped, epoch, rng):
    """One training batch: reflect-pad-2 random crops of x[idx], mirrored where
    flipped[idx] XOR (epoch is odd) (the alternating flip)."""
    from ..data import random_crop

    xb = random_crop(x[idx], x.shape[-1], 2, rng, mode="reflect")
    mask = flipped[idx] ^ bool(epoch % 2)
    xb[mask] = xb[mask, :, :, ::-1]
    return xb


def train(args, log=print):
    """Runs the recipe; returns the result dict (accuracies, times, breakdown)."""
    from .. import get_num_threads, set_num_threads
    from .. import cpu_info, init
    from ..data import cifar10
    from ..losses import SoftmaxCrossEntropy
    from ..models import airbench_net
    from ..optim import Lookahead, NesterovSGD
    from ..profiler import LayerTimer
    from ..memory import cached_allocations
    from ..training import no_input_grad
    from ..tta import tta_logits

    t_all = time.perf_counter()
    if args.threads:
        set_num_threads(args.threads)
    ceiling_before = None if args.quick else sgemm_gflops()
    ds = cifar10(root=args.data_root, verify=not args.no_verify)
    xtr_u8, ytr, xte_u8, yte = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
    if args.limit:
        xtr_u8, ytr = xtr_u8[:args.limit], ytr[:args.limit]
        xte_u8, yte = xte_u8[:max(args.limit // 5, 100)], yte[:max(args.limit // 5, 100)]
    t0 = time.perf_counter()
    xtr, xte = normalise(xtr_u8), normalise(xte_u8)
    t_prep = time.perf_counter() - t0

    rng = np.random.default_rng(args.seed)
    model = airbench_net(args.widths, seed=args.seed)
    t0 = time.perf_counter()
    np.copyto(model["whiten"].params["weight"], init.patch_whitening(xtr[:5000], 2, eps=5e-4))
    t_whiten = time.perf_counter() - t0

    batch = args.batch_size
    steps_per_epoch = len(xtr) // batch
    if steps_per_epoch < 1:
        raise ValueError(f"--batch-size: {batch} is more than the {len(xtr)} training images")
    total = args.steps or math.ceil(steps_per_epoch * args.epochs)
    kilostep = 1024 * (1 + 1 / (1 - args.momentum))
    lr, wd = args.lr / kilostep, args.weight_decay * batch / kilostep
    opt = NesterovSGD(param_groups(model, lr, wd), lr=lr, momentum=args.momentum)
    loss = SoftmaxCrossEntropy(reduction="sum", label_smoothing=args.label_smoothing)
    lookahead = Lookahead(model)
    flipped = rng.random(len(xtr)) < 0.5
    timer = LayerTimer(model)
    history, step, epoch = [], 0, 0
    t_train0 = time.perf_counter()
    with timer, no_input_grad(model), cached_allocations():
        while step < total:
            if epoch == args.whiten_bias_epochs:
                opt.freeze("whiten.bias")
            order = rng.permutation(len(xtr))
            t_ep, ep_loss, ep_correct, seen = time.perf_counter(), 0.0, 0, 0
            for b in range(steps_per_epoch):
                idx = order[b * batch:(b + 1) * batch]
                with timer.phase("data"):
                    xb = batch_views(xtr, idx, flipped, epoch, rng)
                opt.lr = lr * lr_multiplier(step, total)
                logits = model.forward(xb, training=True)
                with timer.phase("loss"):
                    value = loss.forward(logits, ytr[idx])
                    g = loss.backward()
                if not math.isfinite(value):
                    raise FloatingPointError(f"training diverged at step {step}: loss {value}")
                model.backward(g)
                with timer.phase("optimizer"):
                    opt.step()
                step += 1
                with timer.phase("lookahead"):
                    if step % 5 == 0:
                        lookahead.update(lookahead_decay(step, total))
                    if step >= total:
                        lookahead.update(1.0)
                ep_loss += value
                ep_correct += int(np.count_nonzero(np.argmax(logits, axis=1) == ytr[idx]))
                seen += len(idx)
                if step >= total:
                    break
            history.append({"epoch": epoch + 1, "steps": step, "train_loss": ep_loss / max(seen, 1),
                            "train_acc": ep_correct / max(seen, 1), "seconds": time.perf_counter() - t_ep})
            log(f"epoch {epoch + 1}: step {step}/{total}, train loss {ep_loss / max(seen, 1):.4f} "
                f"acc {ep_correct / max(seen, 1):.4f} | {history[-1]['seconds']:.1f} s")
            epoch += 1
    t_train = time.perf_counter() - t_train0
    t0 = time.perf_counter()
    with cached_allocations():
        logits, views = tta_logits(model, xte, level=2, batch_size=500, return_views=True)
    t_tta = time.perf_counter() - t0
    acc_tta = float(np.mean(np.argmax(logits, axis=1) == yte))
    acc_plain = float(np.mean(np.argmax(views[0], axis=1) == yte))
    wall = time.perf_counter() - t_all
    ceiling_after = None if args.quick else sgemm_gflops()
    breakdown = {k: round(v, 3) for k, v in timer.table().items()}
    flops = train_flops(args.widths) * batch * total
    res = {"test_acc_tta": acc_tta, "test_acc": acc_plain, "seed": args.seed, "epochs": args.epochs, "steps": total,
           "widths": list(args.widths), "batch_size": batch, "lr": args.lr, "threads": get_num_threads(),
           "wall_s": wall, "train_s": t_train, "tta_s": t_tta, "prep_s": t_prep, "whiten_s": t_whiten,
           "breakdown_s": breakdown, "train_flops": flops, "achieved_gflops": flops / t_train / 1e9,
           "history": history, "machine": cpu_info(), "n_train": len(xtr), "n_test": len(xte),
           "sgemm_gflops_before": ceiling_before, "sgemm_gflops_after": ceiling_after, "load_avg": _loadavg()}
    ceil = f" (sgemm ceiling {ceiling_before:.0f} / {ceiling_after:.0f} before / after)" if ceiling_before else ""
    log(f"test accuracy {acc_tta * 100:.2f}% (6-view TTA), {acc_plain * 100:.2f}% without; "
        f"training {t_train:.1f} s, wall {wall:.1f} s, {res['achieved_gflops']:.1f} GFLOP/s{ceil}")
    return res


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def sgemm_gflops(n=2048, repeats=5):
    """float32 n^3 GEMM GFLOP/s through F.linear (the bundled OpenBLAS split over our
    threads, as the bench's ceiling), median of ``repeats``."""
    from .. import functional as F

    rng = np.random.default_rng(2048)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    F.linear(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        F.linear(a, b)
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / float(np.median(times)) / 1e9


def train_flops(widths, h=32):
    """Multiply-adds x 2 of one training image (forward + both gradients = 3 x forward) of
    airbench_net: the convolutions and the head."""
    w1, w2, w3 = widths
    s0 = h - 1  # 31 after the 2x2 whitening conv
    s1, s2, s3 = s0 // 2, s0 // 4, s0 // 8  # after each block's pool: 15, 7, 3
    fwd = (24 * 12 * s0 * s0 + w1 * 24 * 9 * s0 * s0 + w1 * w1 * 9 * s1 * s1 + w2 * w1 * 9 * s1 * s1
           + w2 * w2 * 9 * s2 * s2 + w3 * w2 * 9 * s2 * s2 + w3 * w3 * 9 * s3 * s3 + 10 * w3)
    return 2 * 3 * fwd


def _fmt(v, spec=".0f"):
    return "—" if v is None else format(v, spec)


def format_table(runs):
    lines = ["| seed | epochs | widths | test acc (TTA) | without TTA | train s | wall s | GFLOP/s | sgemm GFLOP/s "
             "before / after | load avg (1 min) at end |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['seed']} | {r['epochs']} | {'/'.join(map(str, r['widths']))} | "
                     f"{r['test_acc_tta'] * 100:.2f}% | {r['test_acc'] * 100:.2f}% | {r['train_s']:.0f} | "
                     f"{r['wall_s']:.0f} | {r['achieved_gflops']:.1f} | {_fmt(r.get('sgemm_gflops_before'))} / "
                     f"{_fmt(r.get('sgemm_gflops_after'))} | {_fmt((r.get('load_avg') or [None])[0], '.2f')} |")
    if len(runs) > 1:
        a = np.array([r["test_acc_tta"] for r in runs]) * 100
        lines.append(f"\nMean {a.mean():.2f}% (std {a.std(ddof=1):.2f}, min {a.min():.2f}, max {a.max():.2f}) over "
                     f"{len(runs)} runs.")
    return "\n".join(lines)


def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="a few hundred images for a couple of steps (a test)")
    p.add_argument("--epochs", default="9.9", help="training epochs (default 9.9 = 476 steps); a comma list "
                   "(e.g. 2,5,9.9) runs each: the accuracy-vs-time curve (curve.png)")
    p.add_argument("--steps", type=int, default=None, help="training steps (overrides --epochs)")
    p.add_argument("--widths", default="64,256,256", help="channels of the three blocks (airbench95: 128,384,384)")
    p.add_argument("--batch-size", type=int, default=1024, help="images per step (default 1024)")
    p.add_argument("--lr", type=float, default=11.5, help="learning rate per 1024 images (airbench95: 10)")
    p.add_argument("--momentum", type=float, default=0.85, help="Nesterov momentum (default 0.85)")
    p.add_argument("--weight-decay", type=float, default=0.0153,
                   help="weight decay per 1024 images, scaled with the lr as airbench94 does (default 0.0153)")
    p.add_argument("--label-smoothing", type=float, default=0.2, help="label smoothing (default 0.2)")
    p.add_argument("--whiten-bias-epochs", type=int, default=3, help="epochs the whitening bias is trained")
    p.add_argument("--seeds", default="0", help="comma-separated seeds: one run each (default 0)")
    p.add_argument("--limit", type=int, help="use only the first N training images (default: all 50,000)")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores)")
    p.add_argument("--data-root", help="folder with the CIFAR-10 files (default: $PYCONVNET_DATA, cache)")
    p.add_argument("--no-verify", action="store_true", help="load the data files without checking their SHA-256")
    p.add_argument("--out", default="runs/cifar10-speedrun", help="output folder")
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no per-epoch lines")
    return p


def finish_args(args):
    try:
        args.widths = tuple(int(v) for v in str(args.widths).split(","))
        assert len(args.widths) == 3 and min(args.widths) >= 1
    except (ValueError, AssertionError):
        raise ValueError(f"--widths: expected three positive ints like 64,256,256, got {args.widths!r}") from None
    try:
        args.seed_list = [int(v) for v in str(args.seeds).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated ints, got {args.seeds!r}") from None
    if not args.seed_list or min(args.seed_list) < 0:
        raise ValueError(f"--seeds: expected non-negative ints, got {args.seeds!r}")
    if args.quick:
        args.limit = args.limit or 600
        args.batch_size = min(args.batch_size, 128)
        args.steps = args.steps or 3
    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected a positive int, got {args.batch_size}")
    try:
        args.epochs_list = [float(v) for v in str(args.epochs).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--epochs: expected positive numbers like 9.9 or 2,5,9.9, got {args.epochs!r}") from None
    if not args.epochs_list or not all(math.isfinite(e) and e > 0 for e in args.epochs_list):
        raise ValueError(f"--epochs: expected positive numbers like 9.9 or 2,5,9.9, got {args.epochs!r}")
    args.epochs = args.epochs_list[0]
    return args


def run(args):
    log = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda m: None)
    os.makedirs(args.out, exist_ok=True)
    runs = []
    for epochs in args.epochs_list:
        for seed in args.seed_list:
            args.seed, args.epochs = seed, epochs
            log(f"[seed {seed}] airbench_net {args.widths}, {epochs} epochs, batch {args.batch_size}")
            runs.append(train(args, log))
            with open(os.path.join(args.out, "results.json"), "w") as f:
                json.dump({"command": " ".join(sys.argv), "runs": runs}, f, indent=1, default=float)
    table = format_table(runs)
    print(table)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    if len(args.epochs_list) > 1:
        plot_curve(runs, os.path.join(args.out, "curve.png"))
    return runs


def curve_points(runs):
    """The accuracy-vs-time curve's points: runs grouped by (widths, epochs), each group's mean
    training seconds and TTA accuracy (%) with its min and max over seeds; sorted by widths, then
    seconds."""
    groups = {}
    for r in runs:
        groups.setdefault((tuple(r["widths"]), float(r["epochs"])), []).append(r)
    points = []
    for (widths, epochs), rs in groups.items():
        acc = np.array([100 * r["test_acc_tta"] for r in rs])
        points.append({"widths": widths, "epochs": epochs, "runs": len(rs),
                       "train_s": float(np.mean([r["train_s"] for r in rs])),
                       "acc": float(acc.mean()), "acc_min": float(acc.min()), "acc_max": float(acc.max())})
    return sorted(points, key=lambda p: (p["widths"], p["train_s"]))


def plot_curve(runs, path):
    """Test accuracy (TTA) against training seconds, one point per (widths, epochs) with the
    seeds' mean and a bar from their min to max, labelled by epochs; skipped (returns None)
    without matplotlib."""
    try:
        from ..plots import _pyplot

        plt = _pyplot()
    except ImportError:
        return None
    points = curve_points(runs)
    fig, ax = plt.subplots(figsize=(6, 4))
    for widths in sorted({p["widths"] for p in points}):
        ps = [p for p in points if p["widths"] == widths]
        ax.errorbar([p["train_s"] for p in ps], [p["acc"] for p in ps], fmt="o-", capsize=3,
                    yerr=[[p["acc"] - p["acc_min"] for p in ps], [p["acc_max"] - p["acc"] for p in ps]],
                    label="widths " + "/".join(map(str, widths)))
        for p in ps:
            seeds = f", {p['runs']} seeds" if p["runs"] > 1 else ""
            ax.annotate(f"{p['epochs']:g} ep{seeds}", (p["train_s"], p["acc"]), textcoords="offset points",
                        xytext=(5, -11), fontsize=8)
    ax.axhline(94.0, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="training seconds", ylabel="test accuracy, 6-view TTA (%)", title="CIFAR-10 speedrun")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_from_args(args):
    """The CLI's entry: fills the defaults, runs, returns the exit status (2 for a bad option)."""
    from . import _common

    return _common.run_from_args(args, finish_args, run)


def main(argv=None):
    """Entry point: ``main(["--quick"])``; returns the exit status."""
    from . import _common

    return _common.main("cifar10-speedrun", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
