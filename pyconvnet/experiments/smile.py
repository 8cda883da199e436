"""Smile / non-smile face classification from image folders: the Kyoto Univ. exercise §6.5 [発展課題 B2].

``pyconvnet experiment smile --data DIR`` trains a two-class classifier on the folders

    DIR/train/smile/*.jpg   DIR/train/nonsmile/*.jpg   DIR/test/smile/...   DIR/test/nonsmile/...

of 218x178 RGB images, streamed from disk in batches (never all in memory:
``pyconvnet.data.ImageFolder`` decodes, resizes and scales each batch to [0, 1], as the
exercise's ``ImageDataGenerator(rescale=1/255).flow_from_directory(target_size=(218, 178),
batch_size=32)``), with the exercise's ``fit_generator`` call: 10 epochs of
``steps_per_epoch`` = 100 batches of 32, ``validation_steps`` = 30 test batches after each
epoch, Adadelta (lr 1.0), categorical cross-entropy; then ``evaluate_generator`` on 30 test
batches. Classes are the sorted folder names (nonsmile = 0, smile = 1). CelebA's aligned
images (178x218) sorted by its Smiling attribute have exactly this layout.

The exercise's face images are not available here. ``--synthetic N`` first writes a clearly
labelled SYNTHETIC STAND-IN into DIR (``synthetic_faces``): N drawn faces (JPEG, 218x178)
whose mouth curves up (smile) or down (nonsmile), with varied position, size, skin and
background colour, eyes, lighting and noise, so that the whole path -- decode, resize,
batching, training, evaluation -- runs offline. Its accuracy says that the pipeline learns,
nothing about real faces.

The network is ``models.smile_cnn`` (the §6.3 CNN's Dense layer would need 79M weights at
218x178; the exercise asks for the model to be tuned to the larger images). Written to
``--out``: results.json, results.md, history.png (loss and accuracy per epoch),
samples.png (a mosaic of training images). Also measured: the images/s the loader sustains
alone (decode + resize + batch) and during training.

``--quick`` (a test, about a minute): 320 synthetic images at half size (109x89), 3 epochs
of 12 steps, 2 validation steps.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from . import _common

SEED_SETTINGS = {"target_size": (218, 178), "batch_size": 32, "epochs": 10, "steps_per_epoch": 100,
                 "validation_steps": 30, "evaluate_steps": 30, "optimizer": "Adadelta", "loss": "categorical_crossentropy"}
CLASSES = ("nonsmile", "smile")  # sorted: flow_from_directory's (and ImageFolder's) class order
STAND_IN_NOTE = "SYNTHETIC STAND-IN (drawn faces, not the exercise's face images)"


# ------------------------------------------------------------------ the synthetic stand-in
def _require_pil():
    try:
        from PIL import Image, ImageDraw, ImageFilter
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the smile experiment needs Pillow to write and read images: "
                          "pip install 'pyconvnet[image]'") from exc
    return Image, ImageDraw, ImageFilter


def draw_face(rng, smile, size=(218, 178)):
    """One synthetic face as an (H, W, 3) uint8 array: a skin-coloured ellipse at a random
    position and size on a random background, eyes, eyebrows, a nose, and a mouth arc that
    bends up (``smile``) or down, with random width, curvature and thickness; then a lighting
    gradient from a random direction, Gaussian blur and pixel noise."""
    Image, ImageDraw, ImageFilter = _require_pil()
    h, w = size
    bg = tuple(int(v) for v in rng.integers(30, 226, 3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    # a few background shapes, so the face is not the only structure
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.integers(-40, w), rng.integers(-40, h)
        s = rng.integers(20, 90)
        d.rectangle([int(x0), int(y0), int(x0 + s), int(y0 + s * rng.uniform(0.5, 1.5))],
                    fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    fw = rng.uniform(0.45, 0.8) * w                       # face width
    fh = fw * rng.uniform(1.15, 1.45)
    cx = w / 2 + rng.uniform(-0.12, 0.12) * w
    cy = h / 2 + rng.uniform(-0.1, 0.1) * h
    skin = np.array([rng.uniform(120, 250), rng.uniform(80, 210), rng.uniform(60, 180)])
    skin = tuple(int(v) for v in skin)
    hair = tuple(int(v) for v in rng.integers(0, 120, 3))
    d.ellipse([cx - fw / 2 - 4, cy - fh / 2 - 8, cx + fw / 2 + 4, cy + fh * 0.1], fill=hair)
    d.ellipse([cx - fw / 2, cy - fh / 2, cx + fw / 2, cy + fh / 2], fill=skin)
    dark = tuple(int(v * rng.uniform(0.1, 0.4)) for v in skin)
    ey = cy - fh * rng.uniform(0.08, 0.16)
    ex = fw * rng.uniform(0.17, 0.24)
    er = fw * rng.uniform(0.04, 0.07)
    for sx in (-1, 1):
        d.ellipse([cx + sx * ex - er * 1.6, ey - er, cx + sx * ex + er * 1.6, ey + er], fill=(235, 235, 235))
        d.ellipse([cx + sx * ex - er * 0.7, ey - er * 0.7, cx + sx * ex + er * 0.7, ey + er * 0.7], fill=dark)
        by = ey - er * rng.uniform(1.8, 2.8)
        d.line([cx + sx * (ex - er * 2), by + rng.uniform(-2, 2), cx + sx * (ex + er * 2), by + rng.uniform(-2, 2)],
               fill=hair, width=max(1, int(er * 0.6)))
    d.line([cx, ey + er * 2, cx + rng.uniform(-3, 3), cy + fh * 0.1], fill=dark, width=max(1, int(fw / 60)))
    # the mouth: a parabola y = my + k (x - cx)^2, k < 0 curving up at the corners (a smile)
    mw = fw * rng.uniform(0.3, 0.45)
    my = cy + fh * rng.uniform(0.2, 0.3)
    depth = fw * rng.uniform(0.08, 0.15)
    xs = np.linspace(-mw / 2, mw / 2, 24)
    curve = depth * (1.0 - (2 * xs / mw) ** 2)
    ys = my + (curve if smile else -curve) - (depth / 2 if smile else -depth / 2)
    lip = tuple(int(v) for v in (rng.uniform(90, 200), rng.uniform(20, 80), rng.uniform(30, 90)))
    d.line(list(zip((cx + xs).tolist(), ys.tolist())), fill=lip, width=max(2, int(fw * rng.uniform(0.03, 0.055))))
    im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
    a = np.asarray(im, np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    light = 1.0 + rng.uniform(0.1, 0.5) * (np.cos(theta) * (xx / w - 0.5) + np.sin(theta) * (yy / h - 0.5)) * 2
    a *= (light * rng.uniform(0.7, 1.2))[:, :, None]
    a += rng.normal(0.0, rng.uniform(2, 12), a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def write_stand_in(root, n, test_fraction=0.2, seed=0, size=(218, 178), quality=90):
    """Writes ``n`` synthetic faces (half smile, half nonsmile) as JPEG files into
    ``root/train/{smile,nonsmile}`` and ``root/test/...`` (``test_fraction`` of them), plus a
    README saying what they are. Returns {"train": count, "test": count}."""
    Image, _, _ = _require_pil()
    _clear_stand_in(root)
    rng = np.random.default_rng(seed)
    n_test = round(n * test_fraction)
    counts = {"train": n - n_test, "test": n_test}
    for split, count in counts.items():
        for c in CLASSES:
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
        for i in range(count):
            smile = i % 2 == 1
            a = draw_face(rng, smile, size)
            Image.fromarray(a, "RGB").save(os.path.join(root, split, CLASSES[int(smile)], f"{i:06d}.jpg"),
                                           format="JPEG", quality=quality)
    with open(os.path.join(root, "README.txt"), "w") as f:
        f.write(f"{STAND_IN_NOTE}\nWritten by `pyconvnet experiment smile --synthetic {n}` (seed {seed}): faces "
                f"drawn with Pillow whose mouth curves up (smile) or down (nonsmile); {size[0]}x{size[1]} JPEG.\n")
    return counts


def _clear_stand_in(root):
    """Removes the images of an earlier stand-in in ``root`` (so a smaller one does not inherit
    them); a folder that holds other files is never touched: ValueError."""
    splits = [os.path.join(root, s) for s in ("train", "test")]
    if not any(os.path.isdir(s) and os.listdir(s) for s in splits):
        return
    readme = os.path.join(root, "README.txt")
    is_stand_in = False
    if os.path.isfile(readme):
        with open(readme) as f:
            is_stand_in = STAND_IN_NOTE in f.read()
    if not is_stand_in:
        raise ValueError(f"--data: {root} already holds train/ or test/ that no stand-in wrote; give an empty or "
                         f"new folder for --synthetic (it is never overwritten)")
    for split in splits:
        for c in CLASSES:
            folder = os.path.join(split, c)
            for f in os.listdir(folder) if os.path.isdir(folder) else ():
                if f.endswith(".jpg"):
                    os.remove(os.path.join(folder, f))


def mosaic(paths_labels, cols=4, scale=0.5):
    """A (H, W, 3) uint8 mosaic of the images at ``scale``, a green (smile) or red (nonsmile) bar
    under each."""
    Image, _, _ = _require_pil()
    tiles = []
    for path, label in paths_labels:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
            a = np.asarray(im, np.uint8)
        bar = np.zeros((6, a.shape[1], 3), np.uint8)
        bar[:] = (40, 200, 40) if label == 1 else (220, 40, 40)
        tiles.append(np.concatenate([a, bar]))
    th, tw = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    out = np.full((rows * (th + 2) + 2, cols * (tw + 2) + 2, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[2 + r * (th + 2):2 + r * (th + 2) + t.shape[0], 2 + c * (tw + 2):2 + c * (tw + 2) + t.shape[1]] = t
    return out


# ------------------------------------------------------------------ the run
def loader_rate(folder, batches):
    """Images/s of the loader alone: ``batches`` batches decoded, resized and stacked."""
    t0 = time.perf_counter()
    seen = 0
    for i, (x, _) in enumerate(folder):
        seen += len(x)
        if i + 1 >= batches:
            break
    return seen / max(time.perf_counter() - t0, 1e-9), seen


def run(args):
    with _common.threads(args.threads):
        return _run(args)


def _run(args):
    from ..data import ImageFolder
    from ..losses import SoftmaxCrossEntropy
    from ..models import smile_cnn
    from ..optim import AdaDelta
    from ..plots import plot_history, write_png
    from ..training import evaluate_generator, fit_generator

    log = _common.log_to_stderr(args.verbose)
    run = _common.Run(args.out, args)
    synthetic = None
    if args.synthetic:
        t0 = time.perf_counter()
        counts = write_stand_in(args.data, args.synthetic, seed=args.seed)
        synthetic = {"images": args.synthetic, **counts, "seconds": time.perf_counter() - t0}
        log(f"wrote the synthetic stand-in: {counts['train']} train + {counts['test']} test JPEGs into {args.data} "
            f"({synthetic['seconds']:.0f} s)")
    elif os.path.exists(os.path.join(args.data, "README.txt")):
        with open(os.path.join(args.data, "README.txt")) as f:
            if STAND_IN_NOTE in f.read():
                synthetic = {"images": None, "note": "an existing stand-in folder"}
    size = tuple(args.size)
    train = ImageFolder(os.path.join(args.data, "train"), size=size, batch_size=args.batch_size, shuffle=True,
                        seed=args.seed)
    test = ImageFolder(os.path.join(args.data, "test"), size=size, batch_size=args.batch_size, shuffle=True,
                       seed=args.seed + 1)
    for name, f in (("train", train), ("test", test)):
        if f.classes != list(CLASSES):
            raise ValueError(f"--data: {f.root} has the class folders {f.classes}, expected {list(CLASSES)}")
    counts = {n: np.bincount(f.labels, minlength=2).tolist() for n, f in (("train", train), ("test", test))}
    log(f"{train!r}\n{test!r}")
    rate, rate_n = loader_rate(ImageFolder(os.path.join(args.data, "train"), size=size, batch_size=args.batch_size,
                                           shuffle=True, seed=args.seed + 2), args.loader_batches)
    log(f"loader alone: {rate:.0f} images/s ({rate_n} images, decode + resize + batch, one process)")

    model = smile_cnn(width=args.width, seed=args.seed)
    summary = model.summary((3,) + size, print_fn=None)
    log(summary)
    opt = AdaDelta(model, lr=args.lr)
    loss = SoftmaxCrossEntropy()
    t0 = time.perf_counter()
    hist = fit_generator(model, train, args.steps_per_epoch, args.epochs, opt, loss, validation_data=test,
                         validation_steps=args.validation_steps, seed=args.seed, verbose=args.verbose)
    train_wall = time.perf_counter() - t0
    test_loss, test_acc = evaluate_generator(model, test, args.evaluate_steps, loss=loss)
    seen = args.epochs * args.steps_per_epoch * args.batch_size
    plot_history(hist, run.path("history.png"))
    rng = np.random.default_rng(args.seed)
    pick = [int(i) for c in (1, 0) for i in rng.choice(np.flatnonzero(train.labels == c), 4, replace=False)]
    write_png(run.path("samples.png"), mosaic([train.samples[i] for i in pick], cols=4, scale=0.5))
    run.results.update({
        "data": {"root": args.data, "synthetic": synthetic, "classes": list(CLASSES), "counts": counts,
                 "size": list(size)},
        "exercise_settings": SEED_SETTINGS,
        "history": hist.as_dict(),
        "test": {"loss": test_loss, "accuracy": test_acc, "steps": args.evaluate_steps},
        "loader_images_per_s": rate, "loader_images_measured": rate_n,
        "training_images_per_s": seen / max(sum(hist.train_seconds), 1e-9),
        "train_wall_seconds": train_wall, "summary": summary, "params": model.num_params(),
    })
    _common.append_footer(run, run.finish(format_table(run.results, args), echo=True))
    return run.results


def format_table(res, args):
    d, h, t = res["data"], res["history"], res["test"]
    what = (f"**{STAND_IN_NOTE}**: {d['counts']['train'][0] + d['counts']['train'][1]} training and "
            f"{d['counts']['test'][0] + d['counts']['test'][1]} test images written by `--synthetic`. The accuracy "
            f"shows that the pipeline (decode, resize, batching, training, evaluation) learns the drawn mouth's "
            f"curvature; it says nothing about real faces." if d["synthetic"] else
            f"Data: {d['root']} (train {d['counts']['train']}, test {d['counts']['test']} images per class "
            f"{d['classes']}).")
    rows = [[e, f"{lo:.4f}", f"{100 * a:.1f}%", f"{vl:.4f}", f"{100 * va:.1f}%", f"{s:.0f}"]
            for e, lo, a, vl, va, s in zip(h["epoch"], h["train_loss"], h["train_acc"], h["val_loss"], h["val_acc"],
                                           h["seconds"])]
    lines = [
        "# Smile / non-smile classification from image folders (Kyoto Univ. exercise §6.5 B2)", "", what, "",
        f"Images {d['size'][0]}x{d['size'][1]} RGB streamed from disk in batches of {args.batch_size}; "
        f"`fit_generator` with steps_per_epoch={args.steps_per_epoch}, epochs={args.epochs}, "
        f"validation_steps={args.validation_steps}; Adadelta lr {args.lr:g}; softmax cross-entropy; "
        f"`models.smile_cnn` (width {args.width}, {res['params']:,} parameters).", "",
        _common.markdown_table(["epoch", "train loss", "train acc", "val loss", "val acc", "s"], rows), "",
        f"`evaluate_generator` on {t['steps']} test batches of {args.batch_size} (fewer where a pass over the "
        f"test folder ends): loss {t['loss']:.4f}, "
        f"accuracy **{100 * t['accuracy']:.2f}%**.", "",
        f"Loader alone (decode JPEG + resize + stack, one process): {res['loader_images_per_s']:.0f} images/s; "
        f"training (loader + forward + backward + update): {res['training_images_per_s']:.0f} images/s.", "",
        _common.markdown_table(["setting", "exercise", "here"], [
            ["target_size", "(218, 178)", f"({d['size'][0]}, {d['size'][1]})"],
            ["batch_size", "32", str(args.batch_size)], ["epochs", "10", str(args.epochs)],
            ["steps_per_epoch", "100", str(args.steps_per_epoch)],
            ["validation_steps", "30", str(args.validation_steps)],
            ["evaluate_generator steps", "30", str(args.evaluate_steps)],
            ["optimizer", "Adadelta()", f"AdaDelta(lr={args.lr:g})"],
            ["loss", "categorical_crossentropy", "softmax cross-entropy (2 classes)"]]), "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ command line
def add_arguments(p):
    p.add_argument("--data", help="folder with train/{smile,nonsmile} and test/{smile,nonsmile} "
                                  "(default: --out/synthetic_faces with --synthetic)")
    p.add_argument("--synthetic", type=int, help="first write this many synthetic stand-in faces into --data "
                                                 "(JPEG; 20%% of them the test split)")
    p.add_argument("--quick", action="store_true",
                   help="320 synthetic images at 109x89, 3 epochs of 12 steps, 2 validation steps (a test, ~1 min)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="target size (default 218 178)")
    p.add_argument("--epochs", type=int, help="epochs (default 10, the exercise's)")
    p.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default 100, the exercise's)")
    p.add_argument("--validation-steps", type=int, help="test batches after each epoch (default 30)")
    p.add_argument("--evaluate-steps", type=int, help="test batches of the final evaluation (default 30)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32, the exercise's)")
    p.add_argument("--lr", type=float, default=1.0, help="Adadelta learning rate (default 1.0, Keras's)")
    p.add_argument("--width", type=int, default=16, help="first-layer channels of smile_cnn (default 16)")
    p.add_argument("--loader-batches", type=int, default=20, help="batches timed for the loader's images/s")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the stand-in and the shuffling")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores or OMP_NUM_THREADS)")
    p.add_argument("--out", default="runs/smile", help="output folder (default runs/smile)")
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no progress lines")
    return p


def finish_args(args):
    mode = (dict(size=[109, 89], epochs=3, steps_per_epoch=12, validation_steps=2, evaluate_steps=2,
                 synthetic=args.synthetic if args.data else (args.synthetic or 320))
            if args.quick else dict(size=[218, 178], epochs=10, steps_per_epoch=100, validation_steps=30,
                                    evaluate_steps=30))
    if args.quick:
        args.loader_batches = min(args.loader_batches, 5)
    for k, v in mode.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.data is None:
        if not args.synthetic:
            raise ValueError("--data: expected a folder with train/ and test/ (or --synthetic N to write a stand-in)")
        args.data = os.path.join(args.out, "synthetic_faces")
    for name in ("epochs", "steps_per_epoch", "validation_steps", "evaluate_steps", "batch_size", "width",
                 "loader_batches"):
        v = getattr(args, name)
        if v < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive int, got {v}")
    if args.synthetic is not None and args.synthetic < 20:
        raise ValueError(f"--synthetic: expected at least 20 images (train and test of both classes), got "
                         f"{args.synthetic}")
    if min(args.size) < 32:
        raise ValueError(f"--size: expected H and W of at least 32, got {args.size}")
    if args.lr <= 0:
        raise ValueError(f"--lr: expected a positive learning rate, got {args.lr}")
    if not args.synthetic:
        for split in ("train", "test"):
            if not os.path.isdir(os.path.join(args.data, split)):
                raise ValueError(f"--data: {os.path.join(args.data, split)} is not a folder (expected "
                                 f"{split}/smile and {split}/nonsmile; --synthetic N writes a stand-in)")
    return args


def run_from_args(args):
    """The CLI's entry: fills the defaults, runs, returns the exit status (2 for a bad option)."""
    from . import _common

    return _common.run_from_args(args, finish_args, run)


def main(argv=None):
    """Entry point: ``main(["--quick"])``; returns the exit status."""
    from . import _common

    return _common.main("smile", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())
