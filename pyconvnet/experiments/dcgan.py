"""DCGAN on MNIST: the Kyoto Univ. exercise's image generation task (§6.6 [発展課題 B3]).

``pyconvnet experiment dcgan [--quick]`` trains a DCGAN (Radford et al., "Unsupervised
representation learning with deep convolutional generative adversarial networks") with the
exercise's Algorithm 1 and its listed settings:

* pixels scaled to [-1, 1]; mini-batch B = 128 (each discriminator step: B/2 = 64 training
  images, target 1, and B/2 generated ones, target 0, as one batch; each generator step: B
  fresh z, target 1); z of dimension 100 drawn from N(0, I);
* generator (``models.dcgan_generator``): Linear -> BN -> ReLU -> two 4x4 stride-2 transposed
  convolutions (BN + ReLU between) -> tanh; discriminator (``models.dcgan_discriminator``):
  two 4x4 stride-2 convolutions with LeakyReLU(0.2), BN on the second, a linear logit: no
  pooling anywhere;
* the non-saturating generator loss -log D(G(z)) (the exercise's footnote 5); the gradient
  reaches G through D's ``backward`` with D's parameters untouched (``pyconvnet.gan``);
* Adam, lr 2e-4, beta1 0.5 (the DCGAN paper's setting; the exercise names Adam's
  recommended values, which the paper found unstable for GANs).

Evidence that it learns, per epoch (epoch 0: the untrained generator): a LeNet-5 "judge"
(trained here on MNIST with pyconvnet, or loaded with ``--judge CHECKPOINT``) labels 10,000
generated digits; reported are the fraction it labels with a softmax confidence >= 0.9 and
the class histogram (its normalised entropy, 1 = uniform, and the largest class share: a
collapsed generator puts most samples in one class). The same numbers for the real MNIST test
digits are the reference. Written to ``--out``: results.json, results.md, grid_epoch<k>.png
(64 samples of a fixed z), losses.png (the loss curves, D(x), D(G(z)) and the judge's numbers).

``--quick`` (a test, about a minute): 6,000 training images, one epoch, a judge trained on
6,000 images for one epoch, 1,000 samples.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from . import _common

PAPER_SETTINGS = {"batch": 128, "z_dim": 100, "pixels": "[-1, 1]", "lr": 2e-4, "beta1": 0.5}


# ------------------------------------------------------------------ data and judge
def to_tanh_range(images):
    """uint8 (N, 1, 28, 28) -> float32 in [-1, 1] (the exercise: pixels normalised to [-1, 1])."""
    out = images.astype(np.float32)
    out *= np.float32(2.0 / 255.0)
    out -= np.float32(1.0)
    return out


def from_tanh_range(x):
    """Generated images in [-1, 1] -> [0, 1] (what the judge was trained on)."""
    return np.clip((x + 1.0) * 0.5, 0.0, 1.0).astype(np.float32)


def train_judge(ds, args, log):
    """LeNet-5 trained on MNIST ([0, 1] pixels) with Adam; returns (model, test accuracy, seconds)."""
    from ..losses import SoftmaxCrossEntropy
    from ..models import lenet5
    from ..optim import Adam
    from ..training import evaluate, fit

    t0 = time.perf_counter()
    n = args.judge_limit or len(ds.train_images)
    model = lenet5(seed=args.seed + 7)
    fit(model, (ds.train_images[:n], ds.train_labels[:n]), args.judge_epochs, 128, Adam(model, lr=1e-3),
        SoftmaxCrossEntropy(), seed=args.seed, verbose=False)
    _, acc = evaluate(model, (ds.test_images, ds.test_labels), batch_size=500)
    log(f"judge: LeNet-5 trained on {n} images for {args.judge_epochs} epoch(s): test accuracy {100 * acc:.2f}% "
        f"({time.perf_counter() - t0:.0f} s)")
    return model, acc, time.perf_counter() - t0


def load_judge(path, ds, log):
    from ..checkpoint import load_checkpoint
    from ..training import evaluate

    model = load_checkpoint(path).model
    _, acc = evaluate(model, (ds.test_images, ds.test_labels), batch_size=500)
    log(f"judge: {path}: test accuracy {100 * acc:.2f}%")
    return model, acc


def judge_stats(probs, confidence):
    """From the judge's softmax outputs (N, 10): the confident fraction, the class histogram,
    its entropy divided by log 10 (1 = every class equally often) and its largest share."""
    probs = np.asarray(probs, np.float64)
    labels = probs.argmax(axis=1)
    hist = np.bincount(labels, minlength=probs.shape[1])
    share = hist / max(len(labels), 1)
    nz = share[share > 0]
    entropy = max(0.0, float(-(nz * np.log(nz)).sum() / math.log(probs.shape[1])))
    return {"confident": float(np.mean(probs.max(axis=1) >= confidence)), "histogram": hist.tolist(),
            "entropy": entropy, "max_share": float(share.max()), "mean_confidence": float(probs.max(axis=1).mean())}


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def generate(G, n, z_dim, rng, batch=500):
    """``n`` generated images in [-1, 1], the generator in inference mode (running statistics)."""
    from ..gan import sample_z

    out = [G.forward(sample_z(rng, min(batch, n - s), z_dim), training=False) for s in range(0, n, batch)]
    G.clear_cache()
    return np.concatenate(out)


def judge_probs(judge, images01, batch=500):
    out = [softmax(judge.forward(images01[s:s + batch], training=False)) for s in range(0, len(images01), batch)]
    judge.clear_cache()
    return np.concatenate(out)


def image_grid(images, rows, scale=2, pad=2):
    """(N, 1, H, W) in [-1, 1] -> an (H', W', 3) uint8 grid of ``rows`` rows (grey border)."""
    n, _, h, w = images.shape
    cols = math.ceil(n / rows)
    g = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 128, np.uint8)
    pix = np.round(from_tanh_range(images[:, 0]) * 255).astype(np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        g[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = pix[i]
    g = np.kron(g, np.ones((scale, scale), np.uint8))
    return np.repeat(g[:, :, None], 3, axis=2)


def plot_curves(curve, epochs_rows, real_row, path, steps_per_epoch):
    """Loss curves (per window of steps), D(x) / D(G(z)), and the judge's numbers per epoch."""
    from ..plots import _pyplot

    plt = _pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    x = np.array(curve["step"]) / steps_per_epoch
    a.plot(x, curve["d_loss"], label="D loss (BCE, real + fake)")
    a.plot(x, curve["g_loss"], label="G loss (-log D(G(z)))")
    a.set(xlabel="epoch", ylabel="loss", title="losses (means over windows of steps)")
    a.legend()
    b.plot(x, curve["d_real"], label="D(x), real")
    b.plot(x, curve["d_fake"], label="D(G(z)), fake (D step)")
    b.set(xlabel="epoch", ylabel="probability 'real'", ylim=(0, 1), title="discriminator outputs")
    b.legend()
    ep = [r["epoch"] for r in epochs_rows]
    c.plot(ep, [r["confident"] for r in epochs_rows], "o-", label="judge confidence >= 0.9")
    c.plot(ep, [r["entropy"] for r in epochs_rows], "s-", label="class entropy / log 10")
    c.plot(ep, [r["max_share"] for r in epochs_rows], "^-", label="largest class share")
    for key, style in (("confident", "C0"), ("entropy", "C1")):
        c.axhline(real_row[key], color=style, ls=":", lw=1)
    c.set(xlabel="epoch", ylim=(0, 1.02), title="LeNet-5 on 10k samples (dotted: real test digits)")
    c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------ the run
def run(args):
    with _common.threads(args.threads):
        return _run(args)


def _run(args):
    from ..data import mnist
    from ..gan import GANStep, sample_z
    from ..models import dcgan_discriminator, dcgan_generator
    from ..optim import Adam
    from ..plots import write_png

    log = _common.log_to_stderr(args.verbose)
    run = _common.Run(args.out, args)
    ds = mnist(root=args.data_root)
    n_train = args.limit or len(ds.train_images)
    real_all = to_tanh_range(ds.train_images[:n_train])

    if args.judge:
        judge, judge_acc = load_judge(args.judge, ds, log)
        judge_seconds = 0.0
    else:
        judge, judge_acc, judge_seconds = train_judge(ds, args, log)
    real_probs = judge_probs(judge, ds.test_images[:args.samples].astype(np.float32) / np.float32(255))
    real_row = judge_stats(real_probs, args.confidence)

    G = dcgan_generator(z_dim=args.z_dim, width=args.width, seed=args.seed)
    D = dcgan_discriminator(width=args.width, seed=args.seed + 1)
    summaries = {
        "generator": G.summary((args.z_dim,), print_fn=None),
        "discriminator": D.summary((1, 28, 28), print_fn=None),
        "judge": judge.summary((1, 28, 28), print_fn=None),
    }
    for text in summaries.values():
        log(text)
    g_opt = Adam(G, lr=args.lr, beta1=args.beta1)
    d_opt = Adam(D, lr=args.lr, beta1=args.beta1)
    step = GANStep(G, D, g_opt, d_opt, args.z_dim)

    half = args.batch_size // 2
    steps_per_epoch = n_train // half  # the last partial batch is dropped: every D batch is B
    fixed_z = sample_z(np.random.default_rng(args.seed + 99), 64, args.z_dim)
    rows, curve = [], {k: [] for k in ("step", "d_loss", "g_loss", "d_real", "d_fake")}
    window = max(1, min(args.log_every, steps_per_epoch))
    acc = {k: [] for k in ("d_loss", "g_loss", "d_real", "d_fake")}

    def evaluate_epoch(epoch, seconds, logs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([args.seed, 1000 + epoch])
        probs = judge_probs(judge, from_tanh_range(generate(G, args.samples, args.z_dim, rng)))
        row = {"epoch": epoch, **judge_stats(probs, args.confidence), "train_seconds": seconds, **logs}
        grid = generate_fixed()
        write_png(run.path(f"grid_epoch{epoch}.png"), image_grid(grid, 8))
        row["judge_seconds"] = time.perf_counter() - t0
        rows.append(row)
        log(f"epoch {epoch}: " + (f"D loss {logs['d_loss']:.3f} G loss {logs['g_loss']:.3f} D(x) {logs['d_real']:.3f} "
                                  f"D(G(z)) {logs['d_fake']:.3f} | " if logs else "") +
            f"judge: confident {100 * row['confident']:.1f}%, entropy {row['entropy']:.3f}, largest class "
            f"{100 * row['max_share']:.1f}% | {seconds:.0f} s")

    def generate_fixed():
        out = G.forward(fixed_z, training=False)
        G.clear_cache()
        return out

    evaluate_epoch(0, 0.0, {})
    global_step = 0
    for epoch in range(1, args.epochs + 1):
        rng = np.random.default_rng([args.seed, epoch])
        order = rng.permutation(n_train)
        sums = {k: 0.0 for k in acc}
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            logs = step(real_all[order[s * half:(s + 1) * half]], rng)
            global_step += 1
            for k, v in logs.items():
                acc[k].append(v)
                sums[k] += v
            if len(acc["d_loss"]) == window:
                curve["step"].append(global_step - window / 2)
                for k in acc:
                    curve[k].append(float(np.mean(acc[k])))
                    acc[k].clear()
                log(f"  epoch {epoch} step {s + 1}/{steps_per_epoch}: D loss {curve['d_loss'][-1]:.3f} "
                    f"G loss {curve['g_loss'][-1]:.3f} D(x) {curve['d_real'][-1]:.3f} "
                    f"D(G(z)) {curve['d_fake'][-1]:.3f} ({(s + 1) / (time.perf_counter() - t0):.2f} steps/s)")
        seconds = time.perf_counter() - t0
        evaluate_epoch(epoch, seconds, {k: v / steps_per_epoch for k, v in sums.items()})

    if curve["step"]:
        plot_curves(curve, rows, real_row, run.path("losses.png"), steps_per_epoch)
    run.results.update({
        "settings": {"train_images": n_train, "batch": args.batch_size, "real_per_d_step": half,
                     "steps_per_epoch": steps_per_epoch, "z_dim": args.z_dim, "width": args.width,
                     "lr": args.lr, "beta1": args.beta1, "samples": args.samples, "confidence": args.confidence},
        "exercise_settings": PAPER_SETTINGS,
        "judge": {"test_accuracy": judge_acc, "seconds": judge_seconds, "checkpoint": args.judge,
                  "epochs": None if args.judge else args.judge_epochs,
                  "train_images": None if args.judge else (args.judge_limit or len(ds.train_images))},
        "real_test_digits": real_row, "epochs": rows, "loss_curve": curve, "summaries": summaries,
        "params": {"generator": G.num_params(), "discriminator": D.num_params()},
    })
    _common.append_footer(run, run.finish(format_table(run.results, args), echo=True))
    return run.results


def format_table(res, args):
    s = res["settings"]
    head = ["epoch", "D loss", "G loss", "D(x)", "D(G(z))", "judge conf. >= 0.9", "class entropy / log 10",
            "largest class", "histogram (0-9)", "train s"]
    fmt = lambda v, p=3: "" if v is None else f"{v:.{p}f}"  # noqa: E731
    body = []
    for r in res["epochs"]:
        body.append([r["epoch"], fmt(r.get("d_loss")), fmt(r.get("g_loss")), fmt(r.get("d_real")),
                     fmt(r.get("d_fake")), f"{100 * r['confident']:.1f}%", f"{r['entropy']:.3f}",
                     f"{100 * r['max_share']:.1f}%", " ".join(map(str, r["histogram"])), f"{r['train_seconds']:.0f}"])
    rr = res["real_test_digits"]
    body.append(["real test digits", "", "", "", "", f"{100 * rr['confident']:.1f}%", f"{rr['entropy']:.3f}",
                 f"{100 * rr['max_share']:.1f}%", " ".join(map(str, rr["histogram"])), ""])
    j = res["judge"]
    judge = (f"loaded from {j['checkpoint']}" if j["checkpoint"] else
             f"LeNet-5 trained here on {j['train_images']} MNIST images for {j['epochs']} epoch(s) (Adam 1e-3)")
    lines = [
        "# DCGAN on MNIST (Kyoto Univ. exercise §6.6, Algorithm 1)", "",
        f"Generator {res['params']['generator']:,} parameters, discriminator {res['params']['discriminator']:,} "
        f"(width {s['width']}); {s['train_images']} training images, B = {s['batch']} ({s['real_per_d_step']} real + "
        f"{s['real_per_d_step']} fake per D step, {s['batch']} z per G step), {s['steps_per_epoch']} steps an epoch, "
        f"z of dimension {s['z_dim']}, Adam lr {s['lr']:g} beta1 {s['beta1']:g}, non-saturating G loss.", "",
        f"Judge: {judge}; its MNIST test accuracy {100 * j['test_accuracy']:.2f}%. Per epoch it labels "
        f"{s['samples']} generated samples (epoch 0: the untrained generator); the last row is the same judge on "
        f"{s['samples']} real test digits.", "",
        _common.markdown_table(head, body), "",
        "The exercise gives settings, not numbers to compare with:", "",
        _common.markdown_table(["setting", "exercise / DCGAN paper", "here"], [
            ["pixels", "[-1, 1]", "[-1, 1]"], ["mini-batch", "128", str(s["batch"])],
            ["z dimension", "about 100", str(s["z_dim"])], ["optimizer", "Adam (paper: lr 2e-4, beta1 0.5)",
                                                           f"Adam lr {s['lr']:g}, beta1 {s['beta1']:g}"],
            ["down/up-sampling", "strided convolutions, no pooling", "4x4 stride-2 (transposed) convolutions"],
            ["activations", "G: ReLU, tanh output; D: LeakyReLU", "G: ReLU, tanh; D: LeakyReLU(0.2)"],
            ["batch norm", "yes", "G: all but the output; D: all but the input"]]), "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ command line
def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="6,000 images, 1 epoch, a judge trained on 6,000 images, 1,000 samples (a test, ~1 min)")
    p.add_argument("--epochs", type=int, help="passes over the training images (default 5)")
    p.add_argument("--batch-size", type=int, default=128,
                   help="B of Algorithm 1: B/2 real + B/2 fake per D step, B z per G step (default 128)")
    p.add_argument("--z-dim", type=int, default=100, help="dimension of z (default 100)")
    p.add_argument("--width", type=int, default=32,
                   help="base channel count w: G 2w -> w -> 1, D w -> 2w (default 32)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of G and D (default 2e-4)")
    p.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 of G and D (default 0.5)")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--judge", help="a LeNet-5 checkpoint (pyconvnet train lenet5) to judge the samples; "
                                   "default: train one here")
    p.add_argument("--judge-epochs", type=int, help="epochs of the judge's training (default 2)")
    p.add_argument("--judge-limit", type=int, help="training images of the judge (default all)")
    p.add_argument("--samples", type=int, help="generated samples the judge labels per epoch (default 10000)")
    p.add_argument("--confidence", type=float, default=0.9,
                   help="softmax confidence counted as 'labelled with high confidence' (default 0.9)")
    p.add_argument("--log-every", type=int, default=50, help="steps per point of the loss curve (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, z and the shuffling (default 0)")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores or OMP_NUM_THREADS)")
    p.add_argument("--data-root", help="folder with the MNIST files (default: $PYCONVNET_DATA, cache)")
    p.add_argument("--out", default="runs/dcgan", help="output folder (default runs/dcgan)")
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no progress lines")
    return p


def finish_args(args):
    mode = (dict(epochs=1, limit=args.limit or 6000, judge_epochs=1, judge_limit=6000, samples=1000)
            if args.quick else dict(epochs=5, judge_epochs=2, samples=10000))
    for k, v in mode.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    for name in ("epochs", "batch_size", "z_dim", "width", "judge_epochs", "samples", "log_every"):
        v = getattr(args, name)
        if v < (0 if name == "epochs" else 1):
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive int, got {v}")
    if args.batch_size < 2 or args.batch_size % 2:
        raise ValueError(f"--batch-size: expected an even number >= 2 (B/2 real + B/2 fake), got {args.batch_size}")
    if args.limit is not None and args.limit < args.batch_size // 2:
        raise ValueError(f"--limit: expected at least B/2 = {args.batch_size // 2} images, got {args.limit}")
    if not 0.0 < args.confidence <= 1.0:
        raise ValueError(f"--confidence: expected a probability in (0, 1], got {args.confidence}")
    if args.lr <= 0 or not 0.0 <= args.beta1 < 1.0:
        raise ValueError(f"--lr / --beta1: expected lr > 0 and beta1 in [0, 1), got {args.lr}, {args.beta1}")
    return args


def run_from_args(args):
    """The CLI's entry: fills the defaults, runs, returns the exit status (2 for a bad option)."""
    from . import _common

    return _common.run_from_args(args, finish_args, run)


def main(argv=None):
    """Entry point: ``main(["--quick"])``; returns the exit status."""
    from . import _common

    return _common.main("dcgan", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
