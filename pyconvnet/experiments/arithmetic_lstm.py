"""The arithmetic-sequence experiment of the CNN+LSTM paper (Inoue, Tsukamoto, "Consideration of
weight parameter characteristics by comparing network structures in deep learning"): two MNIST
digits, consecutive terms a, b of an arithmetic sequence, in; the third term 2b - a out. CNNs +
LSTM trained in two stages (model-1) or end to end (model-2), and the first-layer filters of
their CNNs compared.

``pyconvnet experiment arithmetic-lstm [--quick]`` reproduces the paper's Table 2 and Figs. 4-5:

* data: MNIST's 60000 training images shuffled (``--seed``) into 42000 training and 18000
  validation images, and the 10000 test images: the paper's 42000/18000/10000. Each split's
  image order is reversed and the reversed copy set beside the original, so pair k is
  (image k, image n-1-k): every image is once the first and once the second term, and every
  pair appears in both orders. The label is the third term 2b - a in -9 .. 18, as a class
  index 0 .. 27 (2b - a + 9);
* CNN (``models.arith_cnn``): Conv2d(16 filters, 3x3) - ReLU - MaxPool 2x2 - Dropout(0.25) -
  Flatten - Linear(-> 10);
* model-1: CNN1 trained alone on the first images and their digits, CNN2 on the second ones;
  their predicted digits for the training pairs are the LSTM's training sequence (N, 2, 1)
  (``--lstm-input value``: the digit 0 .. 9 as a number; ``onehot``: (N, 2, 10)); the LSTM
  (``models.arith_lstm``: LSTM(64) - Linear(-> 28)) learns the third term from them. Its
  test accuracy is measured on the CNNs' predictions for the test pairs (the whole model-1);
* model-2 (``models.arith_model2``): the two CNNs' softmax outputs (``--model2-input logits``:
  their logits) stacked into a sequence (N, 2, 10) feeding the same LSTM head, all trained end
  to end on the third term only;
* everything: batch 128, plain SGD lr 0.01, softmax cross-entropy (the paper's Table 1);
  ``--epochs`` for model-1's CNNs, ``--model2-epochs`` for model-2, ``--lstm-epochs`` for model-1's
  LSTM (the paper: 100 for all);
* filters: for reference CNN r and compared CNN c, S_i = min_j ||F_i^r - F_j^c|| over the 16
  first-layer filters (the paper's eq. 1), drawn as heat maps: within each model (Fig. 4) and
  between the models (Fig. 5). The four CNNs start from different random weights; S between
  two untrained CNNs is reported as the reference level.

Written to ``--out``: results.json, results.md (Table 2 beside the paper's, the S values),
filters_same_model.png (Fig. 4), filters_between_models.png (Fig. 5), filters.png and
filters.npz (the four CNNs' first-layer filters). ``--quick``: 3000/1000/1000 images, 2 epochs (a test; about a minute).
"""
from __future__ import annotations

import sys
import time

import numpy as np

# The paper's Table 2 (test accuracy).
PAPER = {"model-1 CNN1": 0.982, "model-1 CNN2": 0.983, "model-1 LSTM": 0.494, "model-2": 0.867}
SPLIT = (42000, 18000, 10000)
OFFSET = 9  # class index of the third term: 2b - a + 9 in 0 .. 27

# panel letter -> (model of the reference CNN, its CNN, model compared, its CNN): the paper's Figs. 4 and 5
FIG4 = {"a": ("model-1", "cnn1", "model-1", "cnn2"), "b": ("model-1", "cnn2", "model-1", "cnn1"),
        "c": ("model-2", "cnn1", "model-2", "cnn2"), "d": ("model-2", "cnn2", "model-2", "cnn1")}
FIG5 = {"a": ("model-1", "cnn1", "model-2", "cnn1"), "b": ("model-2", "cnn1", "model-1", "cnn1"),
        "c": ("model-1", "cnn2", "model-2", "cnn2"), "d": ("model-2", "cnn2", "model-1", "cnn2")}


# ------------------------------------------------------------------ data
def split_mnist(ds, seed, sizes=SPLIT):
    """(train, validation, test) pairs (images uint8 (n, 1, 28, 28), labels): the training set
    shuffled by ``seed`` into the first two, the test set's first sizes[2] images the third."""
    n_tr, n_va, n_te = sizes
    if n_tr + n_va > len(ds.train_images) or n_te > len(ds.test_images):
        raise ValueError(f"--limit: the split {n_tr}/{n_va}/{n_te} needs more images than the data set has "
                         f"({len(ds.train_images)} training, {len(ds.test_images)} test)")
    order = np.random.default_rng(seed).permutation(len(ds.train_images))
    tr, va = order[:n_tr], order[n_tr:n_tr + n_va]
    return ((ds.train_images[tr], ds.train_labels[tr]), (ds.train_images[va], ds.train_labels[va]),
            (ds.test_images[:n_te], ds.test_labels[:n_te]))


def make_pairs(images, labels):
    """The split and its reversed copy side by side: pair k = (image k, image n-1-k).

    Returns (first images, second images, first digits a, second digits b, target 2b - a + 9)."""
    labels = np.asarray(labels, np.int64)
    b_img, b = images[::-1], labels[::-1]
    return images, np.ascontiguousarray(b_img), labels, np.ascontiguousarray(b), 2 * b - labels + OFFSET


def encode_digits(a, b, mode):
    """Predicted digits of the two terms as the LSTM's input sequence: (N, 2, 1), the digit
    itself, 0 .. 9 (``value``: the label as a number, as the paper feeds "the predicted labels";
    scaled to [0, 1] it learned several times slower under SGD lr 0.01), or (N, 2, 10) one-hot
    (``onehot``), float32."""
    seq = np.stack([a, b], axis=1)
    if mode == "value":
        return seq[..., None].astype(np.float32)
    return np.eye(10, dtype=np.float32)[seq]


# ------------------------------------------------------------------ training
def _identity(a):
    return a


def train_single(model, x, y, epochs, args, seed, transform=None):
    """SGD (lr, batch of args) for ``epochs`` passes over (x, y) with the library's fit; returns seconds."""
    from ..losses import SoftmaxCrossEntropy
    from ..optim import SGD
    from ..training import fit, no_input_grad

    t0 = time.perf_counter()
    with no_input_grad(model):
        fit(model, (x, y), epochs, args.batch_size,
            SGD(model.parameters(), lr=args.lr), SoftmaxCrossEntropy(), seed=seed, transform=transform,
            verbose=False)
    return time.perf_counter() - t0


def train_model2(model, xa, xb, y, args, seed, log):
    """End-to-end SGD of the two-input Graph for args.model2_epochs passes; returns (seconds, per-epoch loss)."""
    from ..data import to_float
    from ..losses import SoftmaxCrossEntropy
    from ..optim import SGD
    from ..training import epoch_generator

    opt, loss = SGD(model.parameters(), lr=args.lr), SoftmaxCrossEntropy()
    # the images' gradient is never used: the CNNs' first layers skip it
    model["cnn1"].need_input_grad = model["cnn2"].need_input_grad = False
    model.train()
    t0, losses = time.perf_counter(), []
    for epoch in range(args.model2_epochs):
        rng = epoch_generator(model, seed, epoch)
        order, total = rng.permutation(len(y)), 0.0
        for s in range(0, len(y), args.batch_size):
            idx = order[s:s + args.batch_size]
            logits = model.forward([to_float(xa[idx]), to_float(xb[idx])], training=True)
            total += float(loss.forward(logits, y[idx])) * len(idx)
            model.backward(loss.backward())
            opt.step()
        losses.append(total / len(y))
        log(f"model-2 epoch {epoch + 1}/{args.model2_epochs}: loss {losses[-1]:.4f} "
            f"({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return time.perf_counter() - t0, losses


def _predict(model, x, batch=500, transform=None):
    from ..training import predict

    return np.argmax(predict(model, x, batch_size=batch, transform=transform), axis=1)


def _predict2(model, xa, xb, batch=500):
    from ..data import to_float

    out = [model.forward([to_float(xa[s:s + batch]), to_float(xb[s:s + batch])], training=False)
           for s in range(0, len(xa), batch)]
    return np.argmax(np.concatenate(out), axis=1)


def _branch_digits(model, name, x, batch=500):
    """Digits model-2's CNN ``name`` would read (argmax of its 10 outputs) for images x."""
    return _predict(model[name], x, batch)


# ------------------------------------------------------------------ filters
def filter_dissimilarity(ref, cmp):
    """S_i = min_j ||ref_i - cmp_j|| (Euclidean over each filter's weights): (K_ref,) float64."""
    r = np.asarray(ref, np.float64).reshape(len(ref), -1)
    c = np.asarray(cmp, np.float64).reshape(len(cmp), -1)
    dist = np.sqrt(((r[:, None, :] - c[None, :, :]) ** 2).sum(axis=2))
    return dist.min(axis=1)


def first_filters(cnn):
    return cnn["conv1"].params["weight"].astype(np.float64)


def plot_heatmaps(panels, path, title):
    """One 4x4 heat map of S_i (filter i at row i // 4, column i % 4) per panel, a shared colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmax = max(float(np.max(v)) for _, v in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), constrained_layout=True)
    for ax, (label, s) in zip(np.atleast_1d(axes), panels):
        side = int(np.ceil(np.sqrt(len(s))))
        grid = np.full(side * side, np.nan)
        grid[:len(s)] = s
        im = ax.imshow(grid.reshape(side, side), cmap="viridis", vmin=0.0, vmax=vmax)
        for i, v in enumerate(s):
            ax.text(i % side, i // side, f"{i + 1}\n{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 * vmax else "black")
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(np.atleast_1d(axes)), shrink=0.8, label="S_i = min_j ||F_i - F_j||")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_filters(filters, path):
    """The first-layer filters of every CNN: one row per CNN, the 16 3x3 filters side by side (each
    row on its own symmetric colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(filters)
    k = max(len(w) for w in filters.values())
    fig, axes = plt.subplots(len(names), k, figsize=(0.75 * k, 0.9 * len(names) + 0.4), squeeze=False)
    for r, name in enumerate(names):
        w = filters[name]
        lim = float(np.abs(w).max()) or 1.0
        for j in range(k):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(w):
                ax.imshow(w[j, 0], cmap="RdBu_r", vmin=-lim, vmax=lim)
            if r == 0:
                ax.set_title(str(j + 1), fontsize=7)
        axes[r, 0].set_ylabel(" ".join(name), fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle("first-layer 3x3 filters (red > 0 > blue)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _panel_label(letter, spec):
    rm, rc, cm, cc = spec
    return f"({letter}) {rm} {rc.upper()} vs {cm} {cc.upper()}"


# ------------------------------------------------------------------ the run
def run(args):
    from ._common import Run, log_to_stderr, threads

    with threads(args.threads):
        return _run(args, Run(args.out, args), log_to_stderr(args.verbose))


def _run(args, run, log):
    from .. import get_num_threads
    from ..data import mnist
    from ..models import arith_cnn, arith_lstm, arith_model2

    ds = mnist(root=args.data_root, verify=not args.no_verify)
    train, val, test = split_mnist(ds, args.seed, args.split)
    tr, va, te = make_pairs(*train), make_pairs(*val), make_pairs(*test)
    log(f"pairs: {len(tr[0])} training, {len(va[0])} validation, {len(te[0])} test")
    in_size = 1 if args.lstm_input == "value" else 10
    s = args.seed
    cnn1, cnn2 = arith_cnn(seed=s + 1), arith_cnn(seed=s + 2)
    lstm = arith_lstm(in_size, args.hidden, seed=s + 3)
    model2 = arith_model2(args.hidden, softmax=args.model2_input == "softmax", seed=s + 4)
    summaries = {"CNN": cnn1.summary((1, 28, 28), print_fn=None),
                 "model-1 LSTM": lstm.summary((2, in_size), print_fn=None),
                 "model-2": model2.summary([(1, 28, 28), (1, 28, 28)], print_fn=None)}
    for text in summaries.values():
        print(text + "\n")
    init_s = filter_dissimilarity(first_filters(cnn1), first_filters(cnn2))
    res = run.results
    res.update(summaries=summaries, split=list(args.split), classes=28, threads=get_num_threads(),
               epochs={"cnn": args.epochs, "model-1 lstm": args.lstm_epochs, "model-2": args.model2_epochs})

    # ---- model-1: the CNNs alone, then the LSTM on their predicted digits
    secs = {}
    for name, cnn, x, digits in (("cnn1", cnn1, tr[0], tr[2]), ("cnn2", cnn2, tr[1], tr[3])):
        secs[f"model-1 {name}"] = train_single(cnn, x, digits, args.epochs, args, seed=s + 10 + len(secs))
        log(f"model-1 {name.upper()}: trained {args.epochs} epochs in {secs[f'model-1 {name}']:.0f} s")
    acc = {"model-1 CNN1": float(np.mean(_predict(cnn1, te[0]) == te[2])),
           "model-1 CNN2": float(np.mean(_predict(cnn2, te[1]) == te[3]))}
    seq_tr = encode_digits(_predict(cnn1, tr[0]), _predict(cnn2, tr[1]), args.lstm_input)
    secs["model-1 lstm"] = train_single(lstm, seq_tr, tr[4], args.lstm_epochs, args, seed=s + 20,
                                         transform=_identity)
    seq_te = encode_digits(_predict(cnn1, te[0]), _predict(cnn2, te[1]), args.lstm_input)
    acc["model-1 LSTM"] = float(np.mean(_predict(lstm, seq_te, transform=_identity) == te[4]))
    true_te = encode_digits(te[2], te[3], args.lstm_input)
    extra = {"model-1 LSTM on the true digits": float(np.mean(_predict(lstm, true_te, transform=_identity)
                                                              == te[4])),
             "model-1 both CNNs right": float(np.mean((_predict(cnn1, te[0]) == te[2])
                                                      & (_predict(cnn2, te[1]) == te[3])))}
    log(f"model-1: CNN1 {acc['model-1 CNN1']:.4f}, CNN2 {acc['model-1 CNN2']:.4f}, LSTM {acc['model-1 LSTM']:.4f}")

    # ---- model-2: end to end
    secs["model-2"], losses2 = train_model2(model2, tr[0], tr[1], tr[4], args, s + 30, log)
    acc["model-2"] = float(np.mean(_predict2(model2, te[0], te[1]) == te[4]))
    extra["model-2 validation"] = float(np.mean(_predict2(model2, va[0], va[1]) == va[4]))
    extra["model-2 CNN1 read as a digit classifier"] = float(np.mean(_branch_digits(model2, "cnn1", te[0]) == te[2]))
    extra["model-2 CNN2 read as a digit classifier"] = float(np.mean(_branch_digits(model2, "cnn2", te[1]) == te[3]))
    log(f"model-2: {acc['model-2']:.4f}")

    # ---- filters (Figs. 4 and 5)
    filters = {("model-1", "cnn1"): first_filters(cnn1), ("model-1", "cnn2"): first_filters(cnn2),
               ("model-2", "cnn1"): first_filters(model2["cnn1"]), ("model-2", "cnn2"): first_filters(model2["cnn2"])}
    S = {}
    for fig, spec in (("fig4", FIG4), ("fig5", FIG5)):
        S[fig] = {k: filter_dissimilarity(filters[v[:2]], filters[v[2:]]) for k, v in spec.items()}
    plot_heatmaps([(_panel_label(k, FIG4[k]), v) for k, v in S["fig4"].items()], run.path("filters_same_model.png"),
                  "Fig. 4: first-layer filters, CNN1 vs CNN2 within each model (S_i, lower = a similar filter exists)")
    plot_heatmaps([(_panel_label(k, FIG5[k]), v) for k, v in S["fig5"].items()],
                  run.path("filters_between_models.png"),
                  "Fig. 5: first-layer filters, model-1 vs model-2 (S_i)")
    plot_filters(filters, run.path("filters.png"))
    np.savez(run.path("filters.npz"), **{f"{m}_{c}": w for (m, c), w in filters.items()})
    res.update(accuracy=acc, paper=PAPER, extra=extra, train_seconds=secs, model2_loss=losses2,
               S={fig: {k: v.tolist() for k, v in d.items()} for fig, d in S.items()},
               S_untrained=init_s.tolist(),
               filter_norm_mean={f"{m} {c}": float(np.linalg.norm(w.reshape(len(w), -1), axis=1).mean())
                                 for (m, c), w in filters.items()})
    # the command, the machine and the wall time so far (all but writing the two files) in the table's file
    from ._common import machine

    res["machine"] = machine()
    res["wall_seconds"] = time.perf_counter() - run.t0
    run.finish(format_results(res, args))
    return res


def format_results(res, args):
    from ._common import markdown_table

    acc, paper = res["accuracy"], res["paper"]
    rows = [[k, f"{acc[k]:.4f}", f"{paper[k]:.3f}"] for k in PAPER]
    n_tr, n_va, n_te = res["split"]
    head = (f"Table 2 (test accuracy), {n_tr}/{n_va}/{n_te} images, batch {args.batch_size}, SGD lr {args.lr}, "
            f"epochs: model-1's CNNs {args.epochs}, model-1's LSTM {args.lstm_epochs}, model-2 "
            f"{args.model2_epochs} (the paper: 100 each); model-1's LSTM input: the predicted digits as "
            f"{args.lstm_input}; model-2's LSTM input: the CNNs' {args.model2_input}; LSTM hidden {args.hidden}")
    lines = [head, "",
             markdown_table(["network", "measured", "paper"], rows), "",
             markdown_table(["also measured", "accuracy"], [[k, f"{v:.4f}"] for k, v in res["extra"].items()]), ""]
    for fig, spec, what in (("fig4", FIG4, "Fig. 4 (within a model)"), ("fig5", FIG5, "Fig. 5 (between models)")):
        rows = [[_panel_label(k, spec[k]), f"{np.mean(v):.3f}", f"{np.min(v):.3f}", f"{np.max(v):.3f}"]
                for k, v in res["S"][fig].items()]
        lines += [f"{what}: S_i = min_j ||F_i - F_j|| over the 16 first-layer 3x3 filters", "",
                  markdown_table(["panel", "mean S", "min S", "max S"], rows), ""]
    u = np.asarray(res["S_untrained"])
    lines += [f"Reference: two untrained CNNs (different seeds), mean S {u.mean():.3f} (min {u.min():.3f}, max "
              f"{u.max():.3f}). Training seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                                res["train_seconds"].items()) + "."]
    if "machine" in res:
        m = res["machine"]
        where = (f"Command: `{res['command']}`; wall time {res['wall_seconds'] / 60:.1f} min; machine: "
                 f"{m['cpu']} ({m['isa']}), {m['cores']} cores, {m['threads']} kernel thread(s), "
                 f"Python {m['python']}.")
        lines += ["", where]
    return "\n".join(lines)


# ------------------------------------------------------------------ command line
def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="3000/1000/1000 images, 2 epochs (CNNs, model-2) and 5 (the LSTM): a test, seconds")
    p.add_argument("--epochs", type=int, help="epochs of model-1's CNNs (default 20; the paper: 100)")
    p.add_argument("--model2-epochs", type=int, help="epochs of model-2 (default: --epochs; the paper: 100)")
    p.add_argument("--lstm-epochs", type=int, help="epochs of model-1's LSTM (default 100, the paper's)")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default 128, the paper's)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01, the paper's)")
    p.add_argument("--hidden", type=int, default=64, help="LSTM hidden size (default 64)")
    p.add_argument("--lstm-input", choices=("value", "onehot"), default="value",
                   help="model-1's LSTM input: each predicted digit as a number 0..9 (value, default) or one-hot")
    p.add_argument("--model2-input", choices=("softmax", "logits"), default="softmax",
                   help="what model-2's CNNs hand the LSTM: their softmax outputs (default) or logits")
    p.add_argument("--limit", type=int,
                   help="training images (validation and test scaled as 18000/42000 and 10000/42000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the shuffling")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores or OMP_NUM_THREADS)")
    p.add_argument("--data-root", help="folder with the MNIST files (default: $PYCONVNET_DATA, cache)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check of the MNIST files (for test files in their format)")
    p.add_argument("--out", default="runs/arithmetic-lstm", help="output folder (default runs/arithmetic-lstm)")
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no progress lines")
    return p


def finish_args(args):
    """Fills the mode-dependent defaults; ValueError naming the option on a bad value."""
    if args.limit is not None:
        if args.limit < 2:
            raise ValueError(f"--limit: expected at least 2 training images, got {args.limit}")
        args.split = (args.limit, max(2, args.limit * 18 // 42), max(2, min(10000, args.limit * 10 // 42)))
    else:
        args.split = (3000, 1000, 1000) if args.quick else SPLIT
    if args.epochs is None:
        args.epochs = 2 if args.quick else 20
    if args.model2_epochs is None:
        args.model2_epochs = args.epochs
    if args.lstm_epochs is None:
        args.lstm_epochs = 5 if args.quick else 100
    for name in ("epochs", "model2_epochs", "lstm_epochs", "batch_size", "hidden"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    if not args.lr > 0:
        raise ValueError(f"--lr: expected a positive number, got {args.lr}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads: expected a positive integer, got {args.threads}")
    return args


def run_from_args(args):
    """The CLI's entry: fills the defaults, runs, returns the exit status (2 for a bad option)."""
    from . import _common

    return _common.run_from_args(args, finish_args, run)


def main(argv=None):
    """Entry point: ``main(["--quick"])``; returns the exit status."""
    from . import _common

    return _common.main("arithmetic-lstm", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
