"""The Kyoto Univ. exercise's advanced task B1-(1), deliberate over-fitting ("Image recognition
with neural networks", 2019, §6.4): a large CNN trained on a small MNIST subset, its training and
test loss / accuracy drifting apart, beside the regularised twin trained the same way whose
curves stay together.

``pyconvnet experiment overfit [--quick]`` (or ``python -m pyconvnet.experiments.overfit``)
trains two networks on the first ``--train-size`` (1000) training images and follows both on the
whole test set after every epoch (fit's validation data is the test set, as the exercise's
``validation_data=(Xtest, Ytest)``):

* large: :func:`pyconvnet.models.overfit_cnn` -- the exercise's §6.3 Keras CNN (Conv32 - Conv64 -
  MaxPool - Dense - Dense10, ReLU) with a 256-wide dense layer, about 3.2M weights, no
  regularisation;
* regularised: ``overfit_cnn(regularised=True)`` -- the same with batch norm and the Keras
  example's dropout (0.25, 0.5), trained with weight decay (``--weight-decay``, 5e-4) and random
  translation of the training images (up to ``--shift`` = 2 pixels, redrawn each epoch).

Both: AdaDelta (the exercise's optimizer, its rho 0.95, eps 1e-6, lr 1), batch 32 (the exercise's),
softmax cross-entropy, 40 epochs, the same initial weights' seed.

Written to ``--out``: results.md (per run: final train / test loss and accuracy, the gap, the
best test accuracy and the lowest test loss with their epochs, how far the test loss has risen
from its minimum by the end), results.json (the histories, the model summaries),
curves_large.png and curves_regularised.png (the four curves of B1: train and test loss, train
and test accuracy against the epoch) and test_loss.png (both runs' test loss on one axis).

``--quick`` (about a minute on one core): 300 training images, 1000 test images, 6 epochs.
"""
from __future__ import annotations

import sys

import numpy as np

RUNS = ("large", "regularised")


def train_one(name, train, test, args, log):
    """Trains the large or the regularised network; returns its result dict."""
    from ..data import RandomTranslate
    from ..losses import SoftmaxCrossEntropy
    from ..models import overfit_cnn
    from ..optim import AdaDelta
    from ..training import fit

    regular = name == "regularised"
    model = overfit_cnn(regularised=regular, hidden=args.hidden, seed=args.seed)
    summary = model.summary((1, 28, 28), print_fn=None)
    print(f"{name}:\n{summary}\n")
    opt = AdaDelta(model.parameters(), weight_decay=args.weight_decay if regular else 0.0)
    augment = RandomTranslate(args.shift) if regular and args.shift else None
    log(f"[{name}] {len(train[0])} training images, {args.epochs} epochs, batch {args.batch_size}, AdaDelta"
        + (f", weight decay {args.weight_decay}, translation up to {args.shift} px" if regular else ""))
    hist = fit(model, train, args.epochs, args.batch_size, opt, SoftmaxCrossEntropy(), validation=test,
               seed=args.seed, augment=augment, verbose=args.verbose)
    return {"summary": summary, "params": model.num_params(), "history": hist.as_dict(), **curve_stats(hist)}


def curve_stats(hist):
    """What B1-(1) looks at in the curves: the final values, the train - test gap, the best test
    accuracy and lowest test loss (1-based epochs) and the rise of the test loss after its minimum."""
    tl, vl = np.asarray(hist.train_loss, float), np.asarray(hist.val_loss, float)
    ta, va = np.asarray(hist.train_acc, float), np.asarray(hist.val_acc, float)
    lo, hi = int(np.argmin(vl)), int(np.argmax(va))
    return {"final_train_loss": tl[-1], "final_test_loss": vl[-1], "final_train_acc": ta[-1],
            "final_test_acc": va[-1], "final_gap_acc": ta[-1] - va[-1], "final_loss_ratio": vl[-1] / max(tl[-1], 1e-12),
            "min_test_loss": vl[lo], "min_test_loss_epoch": hist.epoch[lo], "best_test_acc": va[hi],
            "best_test_acc_epoch": hist.epoch[hi], "test_loss_rise": vl[-1] - vl[lo],
            "train_seconds": float(sum(hist.train_seconds)), "epoch_seconds": float(np.mean(hist.seconds))}


def run(args):
    from ..data import mnist
    from ..training import History
    from ._common import Run, log_to_stderr, threads

    log = log_to_stderr(args.verbose)
    run_ = Run(args.out, args)
    ds = mnist(root=args.data_root, verify=not args.no_verify)
    train = (ds.train_images[:args.train_size], ds.train_labels[:args.train_size])
    test = (ds.test_images[:args.test_size], ds.test_labels[:args.test_size])
    res = run_.results
    res.update({"train_images": len(train[0]), "test_images": len(test[0]), "runs": {}})
    with threads(args.threads):
        for name in RUNS:
            r = train_one(name, train, test, args, log)
            res["runs"][name] = r
            log(f"[{name}] train acc {r['final_train_acc']:.4f} / test acc {r['final_test_acc']:.4f}, test loss "
                f"{r['final_test_loss']:.4f} (lowest {r['min_test_loss']:.4f} at epoch {r['min_test_loss_epoch']})")
        _figures(run_, {k: History.from_dict(v["history"]) for k, v in res["runs"].items()}, res)
        return run_.finish(format_table(res, args))  # inside: the machine record names the threads used


def format_table(res, args):
    from ._common import markdown_table

    rows = []
    for name in RUNS:
        r = res["runs"][name]
        rows.append([name, f"{r['params']:,}", f"{r['final_train_loss']:.4f}", f"{r['final_test_loss']:.4f}",
                     f"{100 * r['final_train_acc']:.2f}", f"{100 * r['final_test_acc']:.2f}",
                     f"{100 * r['final_gap_acc']:.2f}",
                     f"{r['min_test_loss']:.4f} ({r['min_test_loss_epoch']})", f"{r['test_loss_rise']:+.4f}",
                     f"{100 * r['best_test_acc']:.2f} ({r['best_test_acc_epoch']})", f"{r['epoch_seconds']:.1f}"])
    lines = [f"Kyoto Univ. exercise B1-(1), deliberate over-fitting: {res['train_images']} MNIST training images, "
             f"{res['test_images']} test images, {args.epochs} epochs, AdaDelta, batch {args.batch_size}. "
             f"Regularised = batch norm + dropout 0.25/0.5 + weight decay {args.weight_decay} + random translation "
             f"up to {args.shift} px.", "",
             markdown_table(["run", "weights", "final train loss", "final test loss", "final train acc (%)",
                             "final test acc (%)", "train - test acc (points)", "lowest test loss (epoch)",
                             "test loss rise after it", "best test acc % (epoch)", "s / epoch"], rows), "",
             "The exercise gives no numbers: it asks for the four curves (curves_large.png, "
             "curves_regularised.png) and the behaviour."]
    return "\n".join(lines)


def _figures(run_, histories, res):
    try:
        from ..plots import _pyplot, plot_history

        plt = _pyplot()
    except ImportError:
        return
    for name, h in histories.items():
        plot_history(h, run_.path(f"curves_{name}.png"), val_label="test",
                     title=f"{name} CNN, {res['train_images']} training images")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, h in histories.items():
        ax.plot(h.epoch, h.val_loss, "s-", ms=3, label=f"{name}: test")
        ax.plot(h.epoch, h.train_loss, "--", label=f"{name}: train")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log", title="training and test loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_.path("test_loss.png"), dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ command line
def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="300 training / 1000 test images, 6 epochs (about a minute on one core)")
    p.add_argument("--epochs", type=int, help="training epochs (default 40)")
    p.add_argument("--train-size", type=int, help="the first N MNIST training images (default 1000)")
    p.add_argument("--test-size", type=int, help="the first N MNIST test images (default all 10000)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch (default 32, the exercise's)")
    p.add_argument("--hidden", type=int, default=256, help="width of the dense layer (default 256)")
    p.add_argument("--weight-decay", type=float, default=5e-4,
                   help="L2 weight decay of the regularised run (default 5e-4)")
    p.add_argument("--shift", type=int, default=2,
                   help="largest random translation (px) of the regularised run's training images (default 2; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, shuffling, dropout and shifts (default 0)")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores or OMP_NUM_THREADS)")
    p.add_argument("--data-root", help="folder with the MNIST files (default: $PYCONVNET_DATA, cache)")
    p.add_argument("--no-verify", action="store_true", help="load the data files without checking their SHA-256")
    p.add_argument("--out", default="runs/overfit", help="output folder (default runs/overfit)")
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no progress lines")
    return p


def finish_args(args):
    """Fills the mode-dependent defaults and checks the options (ValueError naming the flag)."""
    mode = dict(epochs=6, train_size=300, test_size=1000) if args.quick else dict(epochs=40, train_size=1000)
    for k, v in mode.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    for flag in ("epochs", "train_size", "batch_size", "hidden"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')}: expected a positive int, got {getattr(args, flag)}")
    if args.test_size is not None and args.test_size < 1:
        raise ValueError(f"--test-size: expected a positive int, got {args.test_size}")
    if args.shift < 0:
        raise ValueError(f"--shift: expected a non-negative number of pixels, got {args.shift}")
    if not args.weight_decay >= 0:
        raise ValueError(f"--weight-decay: expected a non-negative number, got {args.weight_decay}")
    return args


def run_from_args(args):
    """The CLI's entry: fills the defaults, runs, returns the exit status (2 for a bad option)."""
    from . import _common

    return _common.run_from_args(args, finish_args, run)


def main(argv=None):
    """Entry point: ``main(["--quick"])``; returns the exit status."""
    from . import _common

    return _common.main("overfit", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
