"""The LeNet-5 translation report (Tanaka, Tohoku Univ., "Making LeNet-5 robust to translation",
2024): LeNet-5 and the robust LeNet-5, trained with and without random translation of the
training images, tested on the plain and on a translated MNIST test set (its Table 1, Figs. 3-8).

``pyconvnet experiment robust-lenet5 [--quick]`` (or ``python -m
pyconvnet.experiments.robust_lenet5``) trains four networks in the report's setting:

* :func:`pyconvnet.models.lenet5` and :func:`pyconvnet.models.robust_lenet5` (C5's 120 maps
  upsampled to 28x28, concatenated with the C1 maps, a 1x1 pointwise convolution, then fully
  connected layers);
* each without and with random translation of the training images: every image of every batch
  moved by an integer offset drawn uniformly from [-max_y, max_y] x [-max_x, max_x], redrawn each
  epoch (fit's per-epoch generator), zero fill;
* SGD, learning rate 0.05, 20 epochs, softmax cross-entropy (the report's settings; its batch size
  is not given: 64 here).

Each is tested on the 10,000 test images as they are and on the translated test set: every test
image under each offset of a fixed grid. The report counts 55 shifted versions per image
(550,000 for the test set) but gives the grid only by reference to an earlier report; the grid
here is dy in {-4, -2, 0, 2, 4} x dx in {-5, ..., 5} = 55 offsets (``--max-shift-y 4 --step-y 2
--max-shift-x 5 --step-x 1``): MNIST digits are scaled into a 20x20 box centred in the 28x28
frame, so a 4 pixel vertical move (the margin) keeps a full-height digit inside, and the digits
being narrower than tall leave room for 5 pixels sideways; the corners (+-4, +-5) are the
"digits drawn in a corner" of the report's figures. The training translation draws from the same
range. The shift moves the content and fills with black (no wrap-around).

Written to ``--out``: results.md (Table 1 beside the report's numbers), results.json (the counts,
the per-offset error rates, each run's history and model summary), error_by_shift.png (the test
error at each offset, four panels), examples.png (the report's Figs. 3-8: the seed's test images
2663, 3287, 3962 under every offset, each model's predicted digit, wrong ones in red) and
corner_digits.png (corner-shifted digits that the shift-trained LeNet-5 gets wrong and the
shift-trained robust LeNet-5 right; the report's indices when they are such digits here, others
named in the results when they are not).

``--quick`` (about a minute on one core): 4000 training images, 500 test images, 3 epochs.
"""
from __future__ import annotations

import sys

import numpy as np

# Table 1 of the report: (model, translated training) -> plain test (correct, wrong), translated
# test (correct, wrong). The robust LeNet-5 without translated training was tested translated on
# the first 1000 test images only (55,000 evaluations).
REPORT = {
    ("lenet5", False): ((9696, 304), (331140, 218860)),
    ("robust_lenet5", False): ((9822, 178), (38800, 16200)),
    ("lenet5", True): ((9658, 342), (523358, 26642)),
    ("robust_lenet5", True): ((9771, 229), (534034, 15966)),
}
REPORT_EXAMPLES = (2663, 3287, 3962)  # Figs. 3-8: labels 3, 9, 3
NAMES = {"lenet5": "LeNet-5", "robust_lenet5": "robust LeNet-5"}
CONDITIONS = (("lenet5", False), ("robust_lenet5", False), ("lenet5", True), ("robust_lenet5", True))


def _key(model, shifted):
    return f"{model}/{'shifted' if shifted else 'plain'}"


# ------------------------------------------------------------------ one run
def train_one(model_name, shifted, data, args, log):
    """Trains one of the four networks; returns (model, result dict without the test counts)."""
    from .. import models
    from ..data import RandomTranslate
    from ..losses import SoftmaxCrossEntropy
    from ..optim import SGD
    from ..training import fit

    xtr, ytr = data
    model = getattr(models, model_name)(seed=args.seed)
    summary = model.summary((1, 28, 28), print_fn=None)
    augment = RandomTranslate((args.max_shift_y, args.max_shift_x)) if shifted else None
    log(f"[{_key(model_name, shifted)}] {len(xtr)} training images, {args.epochs} epochs, batch {args.batch_size}, "
        f"SGD lr {args.lr}" + (f", random translation up to ({args.max_shift_y}, {args.max_shift_x})"
                               if shifted else ""))
    hist = fit(model, (xtr, ytr), args.epochs, args.batch_size, SGD(model.parameters(), lr=args.lr),
               SoftmaxCrossEntropy(), seed=args.seed, augment=augment, verbose=args.verbose)
    return model, {"model": model_name, "translated_training": shifted, "summary": summary,
                   "history": hist.as_dict(), "train_seconds": float(sum(hist.train_seconds))}


def evaluate_one(model, test, grid, args):
    """Plain and translated test counts of ``model``, and its (K, N) shifted predictions."""
    import time

    from ..training import predict
    from ..tta import shifted_predictions

    xte, yte = test
    t0 = time.perf_counter()
    plain = np.argmax(predict(model, xte, batch_size=args.eval_batch_size), axis=1)
    shifted = shifted_predictions(model, xte, grid, batch_size=args.eval_batch_size)
    wrong = shifted != yte[None, :]
    n_plain_wrong = int(np.count_nonzero(plain != yte))
    res = {"plain": {"correct": len(yte) - n_plain_wrong, "wrong": n_plain_wrong,
                     "error": n_plain_wrong / len(yte)},
           "translated": {"correct": int(wrong.size - wrong.sum()), "wrong": int(wrong.sum()),
                          "error": float(wrong.mean())},
           "error_by_shift": wrong.mean(axis=1).tolist(), "test_seconds": time.perf_counter() - t0}
    return res, plain, shifted


# ------------------------------------------------------------------ the run
def run(args):
    from ..data import mnist, shift_grid
    from ._common import Run, log_to_stderr, threads

    log = log_to_stderr(args.verbose)
    run_ = Run(args.out, args)
    grid = shift_grid(args.max_shift_y, args.max_shift_x, args.step_y, args.step_x)
    ds = mnist(root=args.data_root, verify=not args.no_verify)
    xtr, ytr = ds.train_images[:args.train_limit], ds.train_labels[:args.train_limit]
    xte, yte = ds.test_images[:args.test_limit], ds.test_labels[:args.test_limit]
    res = run_.results
    res.update({"grid": grid.tolist(), "train_images": len(xtr), "test_images": len(xte), "runs": {}})
    preds = {}
    with threads(args.threads):
        for model_name, shifted in CONDITIONS:
            key = _key(model_name, shifted)
            model, r = train_one(model_name, shifted, (xtr, ytr), args, log)
            if not shifted:
                print(f"{NAMES[model_name]}:\n{r['summary']}\n")
            t, plain, sp = evaluate_one(model, (xte, yte), grid, args)
            r.update(t)
            preds[key] = (plain, sp)
            res["runs"][key] = r
            log(f"[{key}] plain test error {100 * t['plain']['error']:.2f}%, translated test error "
                f"{100 * t['translated']['error']:.2f}% ({len(grid)} offsets x {len(xte)} images, "
                f"{t['test_seconds']:.0f} s)")
            del model
        check_unshifted(grid, preds)
        res["corner_examples"] = corner_examples(grid, preds, yte, args.examples)
        _figures(run_, grid, preds, (xte, yte), args, res)
        return run_.finish(format_table(res, args))  # inside: the machine record names the threads used


def check_unshifted(grid, preds):
    """The translated test's (0, 0) offset is the plain test: the two must agree exactly."""
    zero = int(np.flatnonzero((grid == 0).all(axis=1))[0])
    for key, (plain, sp) in preds.items():
        if not np.array_equal(plain, sp[zero]):
            raise AssertionError(f"{key}: predictions at offset (0, 0) differ from the plain test's")


def corner_offsets(grid):
    """Rows of ``grid`` at its four corners (+-max_y, +-max_x)."""
    my, mx = np.abs(grid).max(axis=0)
    return [int(k) for k in np.flatnonzero((np.abs(grid[:, 0]) == my) & (np.abs(grid[:, 1]) == mx))]


def corner_examples(grid, preds, labels, wanted, count=3):
    """Test images at a corner offset that the shift-trained LeNet-5 misclassifies and the
    shift-trained robust LeNet-5 classifies: the ``wanted`` indices (the report's) where they are
    such images, then the first others to make up ``count``. Returns a list of dicts."""
    _, lenet = preds[_key("lenet5", True)]
    _, robust = preds[_key("robust_lenet5", True)]
    corners = corner_offsets(grid)
    qualifies = (lenet[corners] != labels) & (robust[corners] == labels)  # (4, N)

    def entry(i, report):
        ok = np.flatnonzero(qualifies[:, i])
        k = corners[int(ok[0])] if len(ok) else corners[int(np.argmax(lenet[corners, i] != labels[i]))]
        return {"index": int(i), "label": int(labels[i]), "shift": [int(v) for v in grid[k]],
                "lenet5": int(lenet[k, i]), "robust_lenet5": int(robust[k, i]), "qualifies": bool(len(ok)),
                "report_index": report}

    out = [entry(i, True) for i in wanted if i < len(labels)]
    for i in np.flatnonzero(qualifies.any(axis=0)):
        if sum(e["qualifies"] for e in out) >= count:
            break
        if int(i) not in wanted:
            out.append(entry(int(i), False))
    return out


# ------------------------------------------------------------------ table
def _pct(v):
    return f"{100 * v:.1f}%"


def format_table(res, args):
    from ._common import markdown_table

    rows = []
    for model_name, shifted in CONDITIONS:
        r = res["runs"][_key(model_name, shifted)]
        (rpc, rpw), (rtc, rtw) = REPORT[(model_name, shifted)]
        star = "*" if (model_name, shifted) == ("robust_lenet5", False) else ""
        rows.append([NAMES[model_name], "yes" if shifted else "no",
                     r["plain"]["correct"], r["plain"]["wrong"], _pct(r["plain"]["error"]),
                     r["translated"]["correct"], r["translated"]["wrong"], _pct(r["translated"]["error"]),
                     f"{_pct(rpw / (rpc + rpw))} / {_pct(rtw / (rtc + rtw))}{star}"])
    k = len(res["grid"])
    ys = sorted({g[0] for g in res["grid"]})
    xs = sorted({g[1] for g in res["grid"]})
    lines = [f"Table 1 (the LeNet-5 translation report): MNIST test results, {res['train_images']} training images, "
             f"{args.epochs} epochs, SGD lr {args.lr}, batch {args.batch_size}; plain test = {res['test_images']} "
             f"images, translated test = each of them under {k} offsets (dy in {ys}, dx in {xs}, zero fill): "
             f"{k * res['test_images']} evaluations.", "",
             markdown_table(["model", "translated training", "plain: correct", "plain: wrong", "plain: error",
                             "translated: correct", "translated: wrong", "translated: error",
                             "report: error plain / translated"], rows), "",
             "Report's counts: LeNet-5 9696/304, 331140/218860; robust 9822/178, 38800/16200 (* the first 1000 "
             "test images only); LeNet-5 shift-trained 9658/342, 523358/26642; robust shift-trained 9771/229, "
             "534034/15966.", ""]
    ex = res["corner_examples"]
    if ex:
        lines += ["Corner-shifted test images (shift-trained networks; the report's Figs. 3-8 show 2663, 3287, "
                  "3962):", "",
                  markdown_table(["index", "label", "offset (dy, dx)", "LeNet-5", "robust LeNet-5",
                                  "LeNet-5 wrong, robust right"],
                                 [[e["index"], e["label"], tuple(e["shift"]), e["lenet5"], e["robust_lenet5"],
                                   "yes" if e["qualifies"] else "no"] for e in ex]), ""]
    secs = ", ".join(f"{NAMES[m]}{' (translated training)' if s else ''} "
                     f"{res['runs'][_key(m, s)]['train_seconds']:.0f} s"
                     for m, s in CONDITIONS)
    lines.append(f"Training time: {secs}.")
    return "\n".join(lines)


# ------------------------------------------------------------------ figures
def _figures(run_, grid, preds, test, args, res):
    try:
        from ..plots import _pyplot

        plt = _pyplot()
    except ImportError:
        return
    xte, yte = test
    ys, xs = np.unique(grid[:, 0]), np.unique(grid[:, 1])
    shape = (len(ys), len(xs))
    extent = (xs[0] - 0.5, xs[-1] + 0.5, ys[-1] + 0.5, ys[0] - 0.5)

    fig, axes = plt.subplots(2, 2, figsize=(11, 6), layout="constrained")
    vmax = max(max(r["error_by_shift"]) for r in res["runs"].values())
    for ax, (m, s) in zip(axes.T.ravel(), CONDITIONS):
        err = 100 * np.asarray(res["runs"][_key(m, s)]["error_by_shift"]).reshape(shape)
        im = ax.imshow(err, cmap="viridis", vmin=0, vmax=100 * vmax, extent=extent, aspect="auto")
        for (i, j), v in np.ndenumerate(err):
            ax.text(xs[j], ys[i], f"{v:.0f}", ha="center", va="center", fontsize=6,
                    color="white" if v < 50 * vmax else "black")
        ax.set(title=f"{NAMES[m]}, {'translated' if s else 'plain'} training", xlabel="dx (px)", ylabel="dy (px)",
               xticks=xs, yticks=ys)
    fig.colorbar(im, ax=axes, label="test error (%)")
    fig.suptitle("Test error at each offset of the translated test set")
    fig.savefig(run_.path("error_by_shift.png"), dpi=110)
    plt.close(fig)

    wanted = [i for i in args.examples if i < len(yte)]
    if wanted:
        fig, axes = plt.subplots(len(wanted), 2, figsize=(11, 2.2 * len(wanted)), squeeze=False)
        for row, i in enumerate(wanted):
            for col, m in enumerate(("lenet5", "robust_lenet5")):
                p = preds[_key(m, True)][1][:, i].reshape(shape)
                ax = axes[row, col]
                ax.imshow(p == yte[i], cmap="RdYlGn", vmin=0, vmax=1, extent=extent, aspect="auto")
                for (a, b), v in np.ndenumerate(p):
                    ax.text(xs[b], ys[a], str(v), ha="center", va="center", fontsize=7)
                ax.set(title=f"{NAMES[m]} (translated training), index {i}, label {yte[i]}", xlabel="dx", ylabel="dy",
                       xticks=xs, yticks=ys)
        fig.suptitle("Predicted digit at each offset (red: wrong), the report's Figs. 3-8")
        fig.tight_layout()
        fig.savefig(run_.path("examples.png"), dpi=110)
        plt.close(fig)

    from ..data import translate

    ex = res["corner_examples"]
    if ex:
        fig, axes = plt.subplots(1, len(ex), figsize=(2.3 * len(ex), 2.9), squeeze=False)
        for ax, e in zip(axes[0], ex):
            img = translate(xte[e["index"]:e["index"] + 1], e["shift"][0], e["shift"][1])[0, 0]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"#{e['index']} label {e['label']}, shift {tuple(e['shift'])}\nLeNet-5: {e['lenet5']}  "
                         f"robust: {e['robust_lenet5']}", fontsize=8,
                         color="black" if e["qualifies"] else "grey")
        fig.suptitle("Corner-shifted test digits (shift-trained networks)", fontsize=9)
        fig.tight_layout()
        fig.savefig(run_.path("corner_digits.png"), dpi=110)
        plt.close(fig)


# ------------------------------------------------------------------ command line
def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="4000 training / 500 test images, 3 epochs (about a minute on one core)")
    p.add_argument("--epochs", type=int, help="training epochs of each network (default 20, the report's)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05, the report's)")
    p.add_argument("--batch-size", type=int, default=64, help="training mini-batch (default 64; the report gives none)")
    p.add_argument("--eval-batch-size", type=int, default=64, help="images per forward pass in the tests (default 64)")
    p.add_argument("--max-shift-y", type=int, default=4,
                   help="largest vertical offset of the test grid and the training translation (default 4)")
    p.add_argument("--step-y", type=int, default=2, help="vertical step of the test grid (default 2)")
    p.add_argument("--max-shift-x", type=int, default=5,
                   help="largest horizontal offset of the test grid and the training translation (default 5)")
    p.add_argument("--step-x", type=int, default=1, help="horizontal step of the test grid (default 1)")
    p.add_argument("--examples", default=",".join(map(str, REPORT_EXAMPLES)),
                   help="comma list of test indices for the example figures (default the report's 2663,3287,3962)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images (default all 60000)")
    p.add_argument("--test-limit", type=int, help="use only the first N test images (default all 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, shuffling and translations (default 0)")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores or OMP_NUM_THREADS)")
    p.add_argument("--data-root", help="folder with the MNIST files (default: $PYCONVNET_DATA, cache)")
    p.add_argument("--no-verify", action="store_true", help="load the data files without checking their SHA-256")
    p.add_argument("--out", default="runs/robust-lenet5", help="output folder (default runs/robust-lenet5)")
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no progress lines")
    return p


def finish_args(args):
    """Fills the mode-dependent defaults and checks the options (ValueError naming the flag)."""
    mode = dict(epochs=3, train_limit=4000, test_limit=500) if args.quick else dict(epochs=20)
    for k, v in mode.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    for flag in ("epochs", "batch_size", "eval_batch_size", "step_y", "step_x"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')}: expected a positive int, got {getattr(args, flag)}")
    for flag in ("train_limit", "test_limit"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise ValueError(f"--{flag.replace('_', '-')}: expected a positive int, got {v}")
    for axis in ("y", "x"):
        m, s = getattr(args, f"max_shift_{axis}"), getattr(args, f"step_{axis}")
        if m < 0 or m % s:
            raise ValueError(f"--max-shift-{axis}: expected a non-negative multiple of --step-{axis} ({s}), got {m}")
    if not args.lr > 0:
        raise ValueError(f"--lr: expected a positive learning rate, got {args.lr}")
    if isinstance(args.examples, str):
        try:
            args.examples = [int(v) for v in args.examples.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--examples: expected a comma list of test indices, got {args.examples!r}") from None
        if any(i < 0 for i in args.examples):
            raise ValueError(f"--examples: expected non-negative test indices, got {args.examples}")
    return args


def run_from_args(args):
    """The CLI's entry: fills the defaults, runs, returns the exit status (2 for a bad option)."""
    from . import _common

    return _common.run_from_args(args, finish_args, run)


def main(argv=None):
    """Entry point: ``main(["--quick"])``; returns the exit status."""
    from . import _common

    return _common.main("robust-lenet5", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
