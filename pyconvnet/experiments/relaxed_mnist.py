"""The relaxed receptive field paper's experiment (Tazume et al., "Proposal of optimization
method of local receptive field using gradient descent"): learned receptive fields on MNIST and
pixel-permuted MNIST.

``pyconvnet experiment relaxed-mnist [--quick]`` (or ``python -m
pyconvnet.experiments.relaxed_mnist``) reproduces the comparison of the paper's
Tables 4.1 / 4.2 and the receptive-field picture of Fig. 4.1:

* proposed: RelaxedConv(1 -> C, n -> n, k=9, centre slot fixed to the identity) - ReLU -
  Linear(C*n -> 10). The receptive-field source R is searched DARTS-style on half of
  the training set (train half / validation half; first-order and/or the paper's
  eq. 4 second-order update), then discretised (argmax) and the weights are trained
  afresh on the whole training set with the receptive field fixed;
* CNN with the same channel budget: Conv2d(1 -> C, 3x3, 'same') - ReLU - Linear(C*n -> 10);
* "Linear" (the paper's network of linear layers): an MLP n -> H -> 10 with H chosen so
  that it has as many parameters as the CNN.

All final models are trained with the same optimizer, epochs and batch size. The
pixel-permuted set uses one fixed permutation (``--perm-seed``) of train and test.
Everything is written to ``--out``: results.json, results.md (the table),
fields_<dataset>.png (Fig. 4.1; for the permuted set the fields are drawn in the
ORIGINAL image coordinates, so a local field is visible as one). Also reported: time per
search epoch, peak RSS, and the mean distance (original pixels) between each centre and
its learned receptive-field pixels (3x3 grid ~1.2; uniformly random ~14.6 at 28x28), over all
outputs and over the central half (the outputs whose pixel varies most: the digit area).

``--quick`` runs on 14x14 images (2x2 mean-pooled) with a 10k/10k search subset in about
two minutes on one core; the default is the full 28x28 run (20k/20k search subset, 4 search
epochs, 5 training epochs: about half an hour on one core).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

PAPER = {"proposed": (97.37, 97.49), "CNN": (97.47, 95.89), "Linear": (96.21, 96.27)}
PAPER_CENTRES = ((15, 15), (13, 25), (25, 25))  # Fig. 4.1, 1-based, on 28x28


# ------------------------------------------------------------------ data
def load_data(size, root=None, limit=None, perm_seed=0):
    """(xtr, ytr, xte, yte) as float32 images, and the PixelPermutation of the shuffled set."""
    from ..data import PixelPermutation, downsample, mnist

    ds = mnist(root=root)
    xtr, ytr, xte, yte = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
        xte, yte = xte[:max(limit // 6, 100)], yte[:max(limit // 6, 100)]
    xtr, xte = downsample(xtr, size), downsample(xte, size)
    perm = PixelPermutation(perm_seed)
    return (xtr, ytr, xte, yte), perm


def dataset(base, perm, name):
    """The plain or the pixel-permuted copy of ``base``."""
    xtr, ytr, xte, yte = base
    if name == "mnist":
        return base
    return (perm.apply(xtr), ytr, perm.apply(xte), yte)


# ------------------------------------------------------------------ helpers
def _identity(a):
    return a


def train_and_test(model, params, train, test, args, log):
    """Adam on ``params`` (W only for the relaxed net), args.epochs passes; returns (test acc %, seconds)."""
    from ..losses import SoftmaxCrossEntropy
    from ..optim import Adam
    from ..training import evaluate, fit

    t0 = time.perf_counter()
    opt = Adam(params, lr=args.lr)
    fit(model, train, args.epochs, args.batch_size, opt, SoftmaxCrossEntropy(), seed=args.seed, transform=_identity,
        verbose=False)
    _, acc = evaluate(model, test, batch_size=500, transform=_identity)
    return 100.0 * acc, time.perf_counter() - t0


def run_proposed(data, args, order, size, log):
    """Search R (order 1 or 2), discretise, retrain W from scratch; returns a result dict."""
    from ..models import relaxed_net
    from .._process import peak_rss_mib, reset_peak_rss
    from ..optim import Adam, MomentumSGD
    from ..search import arch_parameters, relaxed_layers, search, weight_parameters

    xtr, ytr, xte, yte = data
    rng = np.random.default_rng(args.seed)
    order_idx = rng.permutation(len(xtr))
    half = len(xtr) // 2
    n_s = min(half, args.search_samples) if args.search_samples else half
    tr, va = order_idx[:n_s], order_idx[half:half + n_s]
    model = relaxed_net(size, args.channels, args.k, args.seed, args.r_std)
    w_opt = MomentumSGD(weight_parameters(model), lr=args.search_lr, momentum=0.9)
    r_opt = Adam(arch_parameters(model), lr=args.r_lr)
    reset_peak_rss()
    hist = search(model, (xtr[tr], ytr[tr]), (xtr[va], ytr[va]), args.search_epochs, args.batch_size, w_opt, r_opt,
                  order=order, xi=args.xi if args.xi is not None else args.search_lr, transform=_identity,
                  seed=args.seed, verbose=args.verbose)
    search_peak = peak_rss_mib()
    layer = relaxed_layers(model)[0]
    learned_R = layer.params["R"].copy()
    index = layer.receptive_index()
    del model, w_opt, r_opt
    final = relaxed_net(size, args.channels, args.k, args.seed + 1, args.r_std)
    flayer = relaxed_layers(final)[0]
    np.copyto(flayer.params["R"], learned_R)
    flayer.discretize()
    acc, sec = train_and_test(final, weight_parameters(final), (xtr, ytr), (xte, yte), args, log)
    return {"accuracy": acc, "train_seconds": sec, "search_epoch_seconds": hist["seconds"],
            "search_train_loss": hist["train_loss"], "search_val_loss": hist["val_loss"],
            "search_samples": int(n_s), "search_peak_rss_mib": search_peak, "index": index}


def run_random_fields(data, args, size, log):
    """Ablation: the same network with the receptive field drawn at random (argmax of the random
    initial R, centre slot still the identity), no search; W trained as for the proposed model."""
    from ..models import relaxed_net
    from ..search import relaxed_layers, weight_parameters

    xtr, ytr, xte, yte = data
    model = relaxed_net(size, args.channels, args.k, args.seed + 1, args.r_std)
    layer = relaxed_layers(model)[0].discretize()
    acc, sec = train_and_test(model, weight_parameters(model), (xtr, ytr), (xte, yte), args, log)
    return acc, sec, layer.receptive_index()


def central_outputs(images, fraction=0.5):
    """Output positions whose pixel variance over ``images`` is in the top ``fraction``
    (the digit area of MNIST; found in the permuted coordinates for the shuffled set)."""
    var = images.reshape(len(images), -1).var(axis=0)
    return var >= np.quantile(var, 1.0 - fraction)


def _scaled_centres(size):
    return tuple((max(1, round(r * size / 28)), max(1, round(c * size / 28))) for r, c in PAPER_CENTRES)


def run(args):
    from .. import get_num_threads, set_num_threads

    old_threads = get_num_threads()
    if args.threads:
        set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        set_num_threads(old_threads)


def _run(args):
    from .. import _process, get_num_threads
    from ..functional import grid_index
    from ..metrics import field_distance
    from ..models import grid_cnn, matched_hidden, matched_mlp
    from ..plots import plot_receptive_fields

    log = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda m: None)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    base, permutation = load_data(args.size, args.data_root, args.limit, args.perm_seed)
    size, n = args.size, args.size * args.size
    perm = np.asarray(permutation.indices(size, size))
    hidden = matched_hidden(size, args.channels)
    orders = [1, 2] if args.order == "both" else [int(args.order)]
    rng = np.random.default_rng(12345)
    random_index = np.concatenate([np.arange(n)[:, None], rng.integers(0, n, (n, args.k - 1))], axis=1)
    grid = grid_index(size, size, 3)
    grid = grid[:, [4] + [s for s in range(9) if s != 4]]  # centre first
    res = {"config": {k: v for k, v in vars(args).items() if k != "func"}, "mlp_hidden": hidden,
           "accuracy": {}, "search": {}, "field_distance": {}, "central_field_distance": {},
           "train_seconds": {},
           "reference_distance": {"random": field_distance(random_index, (size, size)),
                                  "grid3x3": field_distance(grid, (size, size))}}
    for name in args.datasets:
        data = dataset(base, permutation, name)
        xtr, ytr, xte, yte = data
        acc, secs = {}, {}
        dperm = perm if name == "shuffled" else None
        central = central_outputs(xtr[:10000])
        for order in orders:
            key = f"proposed (order {order})"
            log(f"[{name}] {key}: search on {args.search_samples or len(xtr) // 2} + same validation samples")
            r = run_proposed(data, args, order, size, log)
            acc[key], secs[key] = r["accuracy"], r["train_seconds"]
            res["search"][f"{name}/{key}"] = {k: v for k, v in r.items() if k not in ("index", "accuracy")}
            res["field_distance"][f"{name}/{key}"] = field_distance(r["index"], (size, size), dperm)
            res["central_field_distance"][f"{name}/{key}"] = field_distance(r["index"][central], (size, size),
                                                                            dperm)
            png = os.path.join(args.out, f"fields_{name}{'' if order == orders[-1] else f'_order{order}'}.png")
            plot_receptive_fields(r["index"], (size, size), png, centres=_scaled_centres(size), perm=dperm,
                                  title=f"{name}: learned receptive fields ({key}; white = other slots)")
            np.save(os.path.join(args.out, f"index_{name}_order{order}.npy"), r["index"])
            log(f"[{name}] {key}: test accuracy {r['accuracy']:.2f}%  (search epoch "
                f"{np.mean(r['search_epoch_seconds']):.1f} s, field distance "
                f"{res['field_distance'][f'{name}/{key}']:.2f} px)")
        if args.random_fields:
            key = "random fields (no search)"
            acc[key], secs[key], ridx = run_random_fields(data, args, size, log)
            res["field_distance"][f"{name}/{key}"] = field_distance(ridx, (size, size), dperm)
            res["central_field_distance"][f"{name}/{key}"] = field_distance(ridx[central], (size, size), dperm)
            log(f"[{name}] {key}: test accuracy {acc[key]:.2f}%")
        for key, model in (("CNN", grid_cnn(size, args.channels, args.seed)),
                           ("Linear", matched_mlp(size, hidden, args.seed))):
            acc[key], secs[key] = train_and_test(model, model.parameters(), (xtr, ytr), (xte, yte), args, log)
            log(f"[{name}] {key}: test accuracy {acc[key]:.2f}%")
        res["accuracy"][name] = acc
        res["train_seconds"][name] = secs
        del data, xtr, ytr, xte, yte
    res["peak_rss_mib"] = _process.peak_rss_mib()
    res["threads"] = get_num_threads()
    res["total_seconds"] = time.perf_counter() - t_start
    table = format_table(res, args)
    print(table)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=float)
    return res


def format_table(res, args):
    names = list(res["accuracy"])
    rows = list(next(iter(res["accuracy"].values())))
    head = "| method | " + " | ".join("MNIST" if d == "mnist" else "Shuffled MNIST" for d in names) + " |"
    lines = [f"Test accuracy (%), {args.size}x{args.size} images, {args.epochs} training epochs, "
             f"C={args.channels}, k={args.k}; MLP hidden={res['mlp_hidden']}", "", head,
             "|---" * (len(names) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(f"{res['accuracy'][d][r]:.2f}" for d in names) + " |")
    for r, (a, b) in PAPER.items():
        vals = {"mnist": a, "shuffled": b}
        lines.append(f"| paper: {r} | " + " | ".join(f"{vals[d]:.2f}" for d in names) + " |")
    lines += ["", "| search | seconds / search epoch | samples (train = val) | final val loss | "
                  "peak RSS search (MiB) |", "|---|---|---|---|---|"]
    for key, s in res["search"].items():
        lines.append(f"| {key} | {np.mean(s['search_epoch_seconds']):.1f} | {s['search_samples']} | "
                     f"{s['search_val_loss'][-1] if s['search_val_loss'] else float('nan'):.4f} | "
                     f"{s['search_peak_rss_mib']:.0f} |")
    lines += ["", "| receptive field | mean centre-to-slot distance, all outputs (px) | central half (px) |",
              "|---|---|---|"]
    for key, d in res["field_distance"].items():
        lines.append(f"| {key} | {d:.2f} | {res['central_field_distance'][key]:.2f} |")
    lines += ["", f"Distances in original image pixels (the permutation undone). References: 3x3 grid "
                  f"{res['reference_distance']['grid3x3']:.2f} px, uniformly random fields "
                  f"{res['reference_distance']['random']:.2f} px. Peak RSS (whole run) "
                  f"{res['peak_rss_mib']:.0f} MiB; total {res['total_seconds'] / 60:.1f} min "
                  f"({res['threads']} thread(s))."]
    return "\n".join(lines)


# ------------------------------------------------------------------ command line
def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="14x14 images, 10k/10k search subset, 5 search + 3 training epochs (~2 min on one core)")
    p.add_argument("--smoke", action="store_true", help="a seconds-long run for tests (7x7, 1200 images)")
    p.add_argument("--size", type=int, help="image side after mean pooling: 28, 14 or 7 (default 28)")
    p.add_argument("--channels", type=int, default=8, help="output channels of the relaxed / CNN layer")
    p.add_argument("--k", type=int, default=9, help="receptive-field slots (9 = a 3x3 kernel)")
    p.add_argument("--order", choices=("1", "2", "both"), default="both",
                   help="R update: 1 = first-order, 2 = eq. 4 unrolled (default both)")
    p.add_argument("--search-epochs", type=int, help="passes over the search subset")
    p.add_argument("--search-samples", type=int, help="train (and validation) samples for the search")
    p.add_argument("--epochs", type=int, help="training epochs of the final models")
    p.add_argument("--batch-size", type=int, default=128,
                   help="mini-batch size of the search and the training (default 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the final training")
    p.add_argument("--search-lr", type=float, default=0.05, help="momentum-SGD learning rate of W in the search")
    p.add_argument("--r-lr", type=float, default=0.05, help="Adam learning rate of R")
    p.add_argument("--r-std", type=float, default=1e-3, help="R initialisation std")
    p.add_argument("--xi", type=float, help="virtual step gamma of eq. 4 (default: --search-lr)")
    p.add_argument("--datasets", default="mnist,shuffled", help="comma list of mnist, shuffled")
    p.add_argument("--no-random-fields", dest="random_fields", action="store_false",
                   help="skip the random-receptive-field ablation")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the search split and the shuffling (default 0)")
    p.add_argument("--perm-seed", type=int, default=0, help="seed of the pixel permutation")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores or OMP_NUM_THREADS, as train)")
    p.add_argument("--data-root", help="folder with the MNIST files (default: $PYCONVNET_DATA, cache)")
    p.add_argument("--out", default="runs/relaxed-mnist", help="output folder (default runs/relaxed-mnist)")
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no progress lines")
    return p


def finish_args(args):
    """Fills the mode-dependent defaults."""
    if args.smoke:
        mode = dict(size=7, search_epochs=1, search_samples=400, epochs=1, limit=args.limit or 1200)
        args.channels = min(args.channels, 2)
        args.verbose = False
    elif args.quick:
        mode = dict(size=14, search_epochs=5, search_samples=10000, epochs=3)
    else:
        mode = dict(size=28, search_epochs=4, search_samples=20000, epochs=5)
    for k, v in mode.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if isinstance(args.datasets, str):
        args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in args.datasets if d not in ("mnist", "shuffled")]
    if bad or not args.datasets:
        raise ValueError(f"--datasets: expected a comma list of mnist, shuffled, got {args.datasets}")
    if args.size not in (28, 14, 7):
        raise ValueError(f"--size: expected 28, 14 or 7, got {args.size}")
    if args.k < 1 or args.channels < 1:
        raise ValueError("--k and --channels must be positive")
    return args


def run_from_args(args):
    """The CLI's entry: fills the defaults, runs, returns the exit status (2 for a bad option)."""
    from . import _common

    return _common.run_from_args(args, finish_args, run)


def main(argv=None):
    """Entry point: ``main(["--quick"])``; returns the exit status."""
    from . import _common

    return _common.main("relaxed-mnist", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
