"""Command line: ``pyconvnet train|evaluate|predict|export|models|experiment`` (also ``python -m pyconvnet``)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

DATASETS = ("mnist", "fashion-mnist", "cifar10")
OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam")
# Defaults per model: what the sources use (the LeNet-5 translation report: SGD lr 0.05; the Kyoto Univ. exercise: Adadelta).
MODEL_DEFAULTS = {
    "mlp3": dict(dataset="mnist", optimizer="sgd", lr=0.5, batch_size=100),
    "lenet5": dict(dataset="mnist", optimizer="sgd", lr=0.05, batch_size=64),
    "keras_cnn": dict(dataset="mnist", optimizer="adadelta", lr=1.0, batch_size=32),
    "cifar_cnn": dict(dataset="cifar10", optimizer="adam", lr=0.001, batch_size=128),
    "robust_lenet5": dict(dataset="mnist", optimizer="sgd", lr=0.05, batch_size=64),
}


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


# The input each data set gives a model, (C, H, W): what predict --image converts a picture to.
INPUT_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
# What a training run writes into --out; a folder holding one of them holds a run.
RUN_FILES = ("checkpoint.npz", "best.npz", "history.json", "results.json")
VAL_SPLIT = 0.1


def _load_dataset(name, root, verify=True):
    from . import data

    loader = {"mnist": data.mnist, "fashion-mnist": data.fashion_mnist, "cifar10": data.cifar10}[name]
    try:
        return loader(root=root, verify=verify)
    except data.ChecksumError as e:  # e.g. files that are not the canonical data set
        raise CLIError(f"{e} (command line: --no-verify)") from None
    except ValueError as e:  # malformed files: the parser's message names the file
        raise CLIError(str(e)) from None


def _fraction(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text}")
    return v


def _int_at_least(lo):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    return parse


def _float_range(lo, lo_open):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
        if not math.isfinite(v) or (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if lo_open else '>='} {lo}, got {text}")
        return v
    return parse


def _make_scheduler(schedule, epochs):
    """The --schedule over a run whose final epoch is ``epochs``: cosine decays to 0 by
    then; step divides by 10 at 50% and 75% of it."""
    from . import optim

    return {"none": lambda: None, "cosine": lambda: optim.CosineAnnealing(T_max=epochs),
            "step": lambda: optim.MultiStepLR([max(1, epochs // 2), max(1, 3 * epochs // 4)], 0.1)}[schedule]()


def _make_optimizer(name, model, lr, weight_decay, schedule="none", epochs=1):
    from . import optim

    cls = {"sgd": optim.SGD, "momentum": optim.MomentumSGD, "adagrad": optim.AdaGrad, "rmsprop": optim.RMSProp,
           "adadelta": optim.AdaDelta, "adam": optim.Adam}[name]
    kw = {} if lr is None else {"lr": lr}
    scheduler = _make_scheduler(schedule, epochs)
    if scheduler is not None:
        kw["scheduler"] = scheduler
    return cls(model.parameters(), weight_decay=weight_decay, **kw)


def _augmenter(kind, seed):
    from . import data

    if kind == "none":
        return None
    if kind == "translate":
        return lambda x, rng: data.random_translate(x, 3, rng)
    if kind == "crop-flip":
        return lambda x, rng: data.random_hflip(data.random_crop(x, x.shape[-1], 4, rng), rng)
    raise CLIError(f"--augment: unknown augmentation {kind!r}")


def cmd_models(args):
    from .models import MODELS, build

    if args.name is None:
        for name, (_, desc) in MODELS.items():
            d = MODEL_DEFAULTS[name]
            print(f"{name:14s} {desc}  [default: --dataset {d['dataset']} --optimizer {d['optimizer']} --lr {d['lr']}]")
        return 0
    if args.name not in MODELS:
        raise CLIError(f"unknown model {args.name!r}; choose from: {', '.join(MODELS)}")
    d = MODEL_DEFAULTS[args.name]
    dataset = args.dataset or d["dataset"]
    shape = INPUT_SHAPES[dataset]
    try:
        model = build(args.name, shape)
    except ValueError as e:
        raise CLIError(f"{e} (--dataset {dataset})") from None
    print(f"{args.name}: {MODELS[args.name][1]}")
    print(f"default training: --dataset {d['dataset']} --optimizer {d['optimizer']} --lr {d['lr']} "
          f"--batch-size {d['batch_size']}; input {dataset} images {shape}")
    model.summary(shape)
    return 0


def _holds_run(folder):
    return os.path.isdir(folder) and any(os.path.exists(os.path.join(folder, f)) for f in RUN_FILES)


def _out_folder(args, model_name, resume_dir=None):
    """The --out folder of a training run, checked before any work: not a file, and not a
    folder holding another run unless --overwrite (or it is the run being resumed). Without
    --out: the resumed run's folder, else runs/MODEL, runs/MODEL-2, ... (the first free one)."""
    if args.out is None:
        if resume_dir is not None:
            return resume_dir
        base = os.path.join("runs", model_name)
        out, n = base, 2
        while os.path.exists(out):
            out, n = f"{base}-{n}", n + 1
        return out
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out: {out} is a file; expected a folder (it is created if missing)")
    same = resume_dir is not None and os.path.abspath(out) == os.path.abspath(resume_dir)
    if _holds_run(out) and not (args.overwrite or same):
        held = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
        raise CLIError(f"--out: {out} already holds a run ({', '.join(held)}); pass --overwrite to replace it, "
                       f"--resume {os.path.join(out, 'checkpoint.npz')} to continue it, or another --out")
    return out


def _make_folder(out):
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out: cannot create the folder {out}: {e.strerror or e}") from None


# Training settings a checkpoint's meta records, with their defaults: --resume takes them
# from the checkpoint, and refuses a flag that asks for another value.
RUN_SETTINGS = {"dataset": None, "optimizer": None, "lr": None, "batch_size": None, "schedule": "none",
                "augment": "none", "weight_decay": 0.0, "seed": 0, "permute_pixels": None, "limit": None,
                "val_split": VAL_SPLIT}


def _settings(args):
    """The run's settings: the command line's, over the model's defaults (a fresh run) or
    the checkpoint's (--resume; a different value is an error)."""
    from .models import MODELS

    ck = None
    if args.resume is not None:
        ck = _load(args.resume)
        meta = ck.meta
        if "model" not in meta or meta["model"] not in MODEL_DEFAULTS:
            raise CLIError(f"--resume: {args.resume} was not written by `pyconvnet train` (its metadata names no "
                           f"zoo model); resume it from Python with fit(initial_epoch=...)")
        if args.model is not None and args.model != meta["model"]:
            raise CLIError(f"--resume: the checkpoint is a {meta['model']} run, not {args.model}")
        model = meta["model"]
        recorded = {k: meta.get(k, v) for k, v in RUN_SETTINGS.items()}
        if "val_split" not in meta:  # runs of pyconvnet 0.1.0 validated on the test set
            recorded["val_split"] = 0.0
        for k, v in recorded.items():
            given = getattr(args, k)
            if given is not None and given != v:
                raise CLIError(f"--{k.replace('_', '-')}: the run being resumed used {v!r}, got {given!r}; a resumed "
                               f"run keeps its settings (start a new run, or resume without the flag)")
        settings = recorded
    else:
        if args.model is None:
            raise CLIError("the following arguments are required: model (or --resume CHECKPOINT)")
        if args.model not in MODELS:
            raise CLIError(f"unknown model {args.model!r}; choose from: {', '.join(MODELS)}")
        model = args.model
        d = MODEL_DEFAULTS[model]
        settings = {k: getattr(args, k) if getattr(args, k) is not None else d.get(k, v)
                    for k, v in RUN_SETTINGS.items()}
    settings["model"] = model
    return settings, ck


def cmd_train(args):
    from . import losses, set_num_threads
    from .checkpoint import save_checkpoint
    from .models import build
    from .training import CheckpointBest, EarlyStopping, History, TrainingDiverged, fit, split_validation

    cfg, ck = _settings(args)
    start = ck.epoch if ck is not None else 0
    epochs = args.epochs if args.epochs is not None else max(start + 1, 1)
    if ck is not None and epochs <= start:
        raise CLIError(f"--epochs: the checkpoint is at epoch {start}, and --epochs is the final epoch (as in "
                       f"Keras), so pass --epochs {start + 1} or more to train on")
    if args.patience is not None and not cfg["val_split"]:
        raise CLIError("--patience: early stopping watches the validation loss; it needs --val-split > 0")
    comm = _communicator(args)
    lead = comm is None or comm.rank == 0  # the rank that prints and writes
    if lead:
        out = _out_folder(args, cfg["model"], (os.path.dirname(args.resume) or ".") if ck is not None else None)
    if comm is not None:
        out = comm.bcast(out if lead else None)
    elif args.threads:
        set_num_threads(args.threads)
    dataset = cfg["dataset"]
    ds = _load_dataset(dataset, args.data_root, verify=not args.no_verify)
    xtr, ytr, xte, yte = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
    if cfg["limit"]:
        xtr, ytr = xtr[:cfg["limit"]], ytr[:cfg["limit"]]
    if cfg["permute_pixels"] is not None:
        from .data import PixelPermutation

        perm = PixelPermutation(cfg["permute_pixels"])
        xtr, xte = perm(xtr), perm(xte)
    try:
        (xfit, yfit), val = split_validation((xtr, ytr), cfg["val_split"])
    except ValueError as e:
        raise CLIError(f"--val-split: {str(e).split(': ', 1)[1]}") from None
    if ck is not None:
        model = ck.model
        from .checkpoint import CheckpointError

        try:  # a schedule is re-made for the new final epoch (cosine decays to 0 by then)
            opt = ck.optimizer(**({"scheduler": _make_scheduler(cfg["schedule"], epochs)}
                                  if cfg["schedule"] != "none" else {}))
        except CheckpointError as e:
            raise CLIError(f"--resume: {e}") from None
        history = History.from_dict(ck.meta.get("history", {}))
    else:
        try:
            model = build(cfg["model"], xtr.shape[1:], classes=len(ds.classes), seed=cfg["seed"])
        except ValueError as e:  # e.g. cifar_cnn on 28x28 digits
            raise CLIError(f"{e} (--dataset {dataset})") from None
        opt = _make_optimizer(cfg["optimizer"], model, cfg["lr"], cfg["weight_decay"], cfg["schedule"], epochs)
        history = None
    if args.summary and lead:
        model.summary(tuple(xtr.shape[1:]), print_fn=lambda t: print(t, file=sys.stderr if args.json else sys.stdout))
    loss = losses.SoftmaxCrossEntropy()
    if lead:
        _make_folder(out)
    meta = {**cfg, "classes": list(ds.classes), "input_shape": list(xtr.shape[1:])}
    callbacks = []
    if val is not None and lead:
        callbacks.append(CheckpointBest(os.path.join(out, "best.npz"), monitor="val_acc", meta=meta))
    if val is not None:
        if args.patience is not None:
            callbacks.append(EarlyStopping(monitor="val_loss", patience=args.patience))
    t0 = time.perf_counter()
    try:
        history = fit(model, (xfit, yfit), epochs=epochs, batch_size=cfg["batch_size"], optimizer=opt, loss=loss,
                      validation=val, seed=cfg["seed"], callbacks=callbacks, history=history, initial_epoch=start,
                      augment=_augmenter(cfg["augment"], cfg["seed"]), verbose=not args.quiet, distributed=comm)
    except TrainingDiverged as e:
        raise CLIError(str(e)) from None
    wall = time.perf_counter() - t0
    # The test set, once: accuracy, loss and the confusion matrix from one pass.
    from .training import predict

    logits = predict(model, xte) if comm is None else comm.predict(model, xte)
    if not lead:
        return 0
    test_acc = float(np.mean(np.argmax(logits, axis=1) == yte))
    test_loss = float(loss.forward(logits, yte))
    done = len(history.epoch) - (len(ck.meta.get("history", {}).get("epoch", [])) if ck is not None else 0)
    res = _train_results(cfg, history, done, wall, len(xfit), val, test_acc, test_loss, len(yte), out)
    meta.update(epoch=history.epoch[-1] if history.epoch else start, history=history.as_dict(), test_acc=test_acc,
                test_loss=test_loss)
    save_checkpoint(os.path.join(out, "checkpoint.npz"), model, opt, meta=meta)
    history.to_json(os.path.join(out, "history.json"))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    _plots(out, history, logits, yte, ds.classes, quiet=args.quiet)
    if args.json:
        print(json.dumps(res))
    else:
        print(_train_line(res))
    return 0


# The communicator of a --distributed run (main's error handlers end every rank through it).
_COMM = None


def _communicator(args):
    """The run's distributed.Communicator with --distributed (None without); a note when
    mpiexec started several processes without --distributed (each would train alone)."""
    global _COMM
    from .distributed import Communicator, launched_under_mpi, mpi_available

    if not getattr(args, "distributed", False):
        if getattr(args, "sync_batchnorm", False):
            raise CLIError("--sync-batchnorm: synchronises batch norm over the ranks of --distributed; pass both")
        if launched_under_mpi() > 1 and not args.quiet:
            print(f"note: {launched_under_mpi()} MPI processes without --distributed: each trains alone; pass "
                  f"--distributed for data-parallel training", file=sys.stderr)
        return None
    if not mpi_available():
        raise CLIError("--distributed: needs mpi4py and an MPI library: pip install 'pyconvnet[mpi]'")
    _COMM = Communicator(threads=args.threads, sync_batchnorm=args.sync_batchnorm)
    return _COMM


def _end_all_ranks(status):
    """After an error was printed: a --distributed run ends its other ranks too (MPI_Abort),
    which would otherwise wait in a collective for this one."""
    if _COMM is not None and _COMM.size > 1:
        _COMM.abort(status)
    return status


def _error_prefix():
    return "pyconvnet: error" if _COMM is None or _COMM.size == 1 else \
        f"pyconvnet: error (rank {_COMM.rank} of {_COMM.size})"


def _train_results(cfg, history, done, wall, n_train, val, test_acc, test_loss, n_test, out):
    """What `train --json` prints and results.json holds."""
    train_s = sum(history.train_seconds[-done:]) if done else 0.0  # this run's epochs (a resumed history may
    # come from a version that did not record train_seconds)
    last = lambda k: getattr(history, k)[-1] if getattr(history, k) else None  # noqa: E731
    vals = [v for v in history.val_acc if v is not None]
    return {
        "model": cfg["model"], "dataset": cfg["dataset"], "epochs": history.epoch[-1] if history.epoch else 0,
        "epochs_this_run": done, "train_images": n_train, "val_images": 0 if val is None else len(val[1]),
        "val_split": cfg["val_split"], "val_acc": last("val_acc"), "val_loss": last("val_loss"),
        "best_val_acc": max(vals) if vals else None, "test_images": n_test, "test_acc": test_acc,
        "test_loss": test_loss, "train_loss": last("train_loss"), "train_acc": last("train_acc"),
        "seconds_per_epoch": wall / done if done else None,
        "train_samples_per_second": n_train * done / train_s if train_s else None,
        "out": out, "checkpoint": os.path.join(out, "checkpoint.npz"),
        "best_checkpoint": os.path.join(out, "best.npz") if val is not None else None,
    }


def _train_line(r):
    if r["val_images"]:
        val = (f"validation accuracy {r['val_acc'] * 100:.2f}% (best {r['best_val_acc'] * 100:.2f}%, "
               f"{r['val_images']} images held out of the training set)")
    else:
        val = "no validation (--val-split 0)"
    speed = "" if r["seconds_per_epoch"] is None else f"; {r['seconds_per_epoch']:.1f} s/epoch"
    if r["train_samples_per_second"] is not None:
        speed += f", {r['train_samples_per_second']:.0f} samples/s training"
    return (f"{r['model']} on {r['dataset']} after {r['epochs']} epoch(s): {val}; test accuracy "
            f"{r['test_acc'] * 100:.2f}% ({r['test_images']} images){speed}; checkpoint in {r['checkpoint']}")


def _plots(out, history, logits, yte, classes, quiet):
    try:
        from .plots import plot_confusion, plot_history
    except ImportError:
        return
    try:
        plot_history(history, os.path.join(out, "curves.png"))
        from .metrics import confusion_matrix

        cm = confusion_matrix(yte, np.argmax(logits, axis=1), num_classes=len(classes))
        plot_confusion(cm, classes, os.path.join(out, "confusion.png"))
    except ImportError:
        if not quiet:
            print("note: install matplotlib (pip install 'pyconvnet[plot]') for training plots", file=sys.stderr)


def _load(path):
    from .checkpoint import CheckpointError, load_checkpoint

    if os.fspath(path).lower().endswith(".onnx"):
        return _load_onnx(path)
    try:
        return load_checkpoint(path)
    except FileNotFoundError:
        raise CLIError(f"checkpoint not found: {path}") from None
    except CheckpointError as e:
        raise CLIError(str(e)) from None


def _test_images(ck, args):
    dataset = args.dataset or ck.meta.get("dataset", "mnist")
    ds = _load_dataset(dataset, args.data_root, verify=not args.no_verify)
    xte, yte = ds.test_images, ds.test_labels
    if ck.meta.get("permute_pixels") is not None:
        from .data import PixelPermutation

        xte = PixelPermutation(ck.meta["permute_pixels"])(xte)
    return dataset, xte, yte, list(ds.classes)


def cmd_evaluate(args):
    from .training import evaluate

    ck = _load(args.checkpoint)
    dataset, xte, yte, _ = _test_images(ck, args)
    try:
        loss, acc = evaluate(ck.model, (xte, yte))
    except (ValueError, TypeError) as e:
        raise CLIError(f"the checkpoint's model does not take the {dataset} test images: {e}") from None
    name = ck.meta.get("model", "model")
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "model": name, "dataset": dataset, "split": "test",
                          "images": len(yte), "accuracy": acc, "loss": loss}))
    else:
        print(f"{name} on {dataset} test set: accuracy {acc * 100:.2f}%, loss {loss:.4f} ({len(yte)} images)")
    return 0


def _softmax(logits):
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=1, keepdims=True)


def _read_images(paths, shape, invert, permute):
    """The files as a uint8 (N, C, H, W) batch the way training saw its images: C=1 as
    grayscale ("L"), C=3 as RGB, resized to H x W (bilinear); predict's transform then
    scales them to [0, 1] as fit's does. ``permute``: the run's --permute-pixels."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise CLIError("--image needs Pillow: pip install 'pyconvnet[image]'") from None
    c, h, w = shape
    batch = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if c == 1 else "RGB").resize((w, h), getattr(Image, "Resampling", Image).BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except FileNotFoundError:
            raise CLIError(f"--image: file not found: {path}") from None
        except (UnidentifiedImageError, OSError) as e:
            raise CLIError(f"--image: {path} is not an image Pillow can read (PNG, JPEG, ...): {e}") from None
        a = a[None] if c == 1 else a.transpose(2, 0, 1)
        batch.append(255 - a if invert else a)
    x = np.stack(batch)
    if permute is not None:
        from .data import PixelPermutation

        x = PixelPermutation(permute)(x)
    return x


def _prediction(logits, classes, top):
    p = _softmax(logits[None])[0]
    order = np.argsort(-p, kind="stable")
    names = [str(classes[i]) if i < len(classes) else str(i) for i in range(len(p))]
    return {"predicted": int(order[0]), "class": names[order[0]], "probability": float(p[order[0]]),
            "probabilities": {names[i]: float(p[i]) for i in range(len(p))},
            "_top": [(names[i], float(p[i])) for i in order[:top]]}


def cmd_predict(args):
    from .training import predict

    ck = _load(args.checkpoint)
    if args.image:
        dataset = args.dataset or ck.meta.get("dataset", "mnist")
        shape = tuple(ck.meta.get("input_shape") or INPUT_SHAPES[dataset])
        classes = ck.meta.get("classes") or []
        x = _read_images(args.image, shape, args.invert, ck.meta.get("permute_pixels"))
        try:
            logits = predict(ck.model, x)
        except (ValueError, TypeError) as e:
            raise CLIError(f"the checkpoint's model does not take {shape} images: {e}") from None
        preds = [dict(image=path, **_prediction(lg, classes, args.top)) for path, lg in zip(args.image, logits)]
        for r in preds:
            top = r.pop("_top")
            if not args.json:
                print(r["predicted"] if args.quiet else f"{r['image']}: predicted {r['predicted']} ({r['class']}) "
                      f"with probability {r['probability']:.3f}; top {len(top)}: "
                      + ", ".join(f"{n} {q:.3f}" for n, q in top))
        if args.json:
            print(json.dumps(preds))
        return 0
    dataset, xte, yte, classes = _test_images(ck, args)
    if not 0 <= args.index < len(xte):
        raise CLIError(f"--index: must be in 0..{len(xte) - 1}, got {args.index}")
    try:
        logits = predict(ck.model, xte[args.index:args.index + 1])[0]
    except (ValueError, TypeError) as e:
        raise CLIError(f"the checkpoint's model does not take the {dataset} test images: {e}") from None
    r = _prediction(logits, classes, args.top)
    top = r.pop("_top")
    label = int(yte[args.index])
    if args.json:
        print(json.dumps({"index": args.index, **r, "label": label}))
    else:
        print(f"{r['predicted']}" if args.quiet else
              f"test image {args.index}: predicted {r['predicted']} ({r['class']}) with probability "
              f"{r['probability']:.3f}, true label {label} ({classes[label]}); top {len(top)}: "
              + ", ".join(f"{n} {q:.3f}" for n, q in top))
    return 0


# ----------------------------------------------------------------- models in and out (ONNX, safetensors)
# The input shape of a data set's images, for `export` (a checkpoint's meta names its data set).
DATASET_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def _onnx_module():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise CLIError("ONNX needs the onnx package: pip install 'pyconvnet[onnx]'") from None
    from . import onnx as pox

    return pox


def _load_onnx(path):
    """An .onnx file as a checkpoint: the imported Graph, the metadata export stored (its data set)."""
    from .checkpoint import Checkpoint

    pox = _onnx_module()
    try:
        model = pox.load(path)
        props = pox.metadata(path)
    except FileNotFoundError:
        raise CLIError(f"model not found: {path}") from None
    except ValueError as e:
        raise CLIError(str(e)) from None
    try:
        meta = json.loads(props.get("pyconvnet.meta", "{}"))
    except ValueError:
        meta = {}
    return Checkpoint(model, None, {}, meta if isinstance(meta, dict) else {}, model.config())


def _shape_arg(text):
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 1,28,28), got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes C,H,W (e.g. 1,28,28), got {text!r}")
    return shape


def cmd_export(args):
    from .checkpoint import save_safetensors

    if not args.onnx and not args.safetensors:
        raise CLIError("export: give --onnx FILE and/or --safetensors FILE")
    ck = _load(args.checkpoint)
    if args.onnx:
        pox = _onnx_module()
        shape = args.input_shape or DATASET_SHAPES.get(ck.meta.get("dataset"))
        if shape is None:
            raise CLIError(f"--input-shape: the checkpoint does not name a known data set "
                           f"({ck.meta.get('dataset')!r}); give the input shape as C,H,W")
        keep = {k: ck.meta[k] for k in ("model", "dataset", "classes", "permute_pixels") if k in ck.meta}
        try:
            pox.export(ck.model, args.onnx, shape, opset=args.opset, metadata={"pyconvnet.meta": json.dumps(keep)})
        except (ValueError, TypeError) as e:
            raise CLIError(f"--onnx: {e}") from None
        print(f"wrote {args.onnx} (ONNX opset {args.opset}, input (N, {', '.join(map(str, shape))}))")
    if args.safetensors:
        save_safetensors(ck.model, args.safetensors)
        print(f"wrote {args.safetensors} (safetensors, {len(ck.model.state_dict())} tensors)")
    return 0


def _add_export_parser(sub):
    from .onnx.export import DEFAULT_OPSET

    x = sub.add_parser("export", help="write a checkpoint's model as ONNX and/or safetensors",
                       description="Write a checkpoint's model as ONNX (inference form, dynamic batch; run it with "
                       "ONNX Runtime) and/or its weights as safetensors (torch's names).")
    x.add_argument("checkpoint", help="a .npz checkpoint (or an .onnx model)")
    x.add_argument("--onnx", metavar="FILE", help="ONNX file to write")
    x.add_argument("--safetensors", metavar="FILE", help="safetensors file to write (weights and buffers)")
    x.add_argument("--input-shape", type=_shape_arg, metavar="C,H,W",
                   help="one input's shape without the batch (default: from the checkpoint's data set)")
    x.add_argument("--opset", type=_int_at_least(13), default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET}; 20+ writes GELU as one op)")
    x.set_defaults(func=cmd_export)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not a usage dump
        raise CLIError(message)


def make_parser():
    from . import __version__

    p = _Parser(prog="pyconvnet", description="Train and use convolutional networks with pyconvnet.")
    p.add_argument("--version", action="version", version=f"pyconvnet {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    t = sub.add_parser("train", help="train a zoo model on a data set", description="Train a zoo model; writes "
                       "checkpoint.npz (the last epoch), best.npz (the best validation accuracy), history.json, "
                       "results.json and plots into --out. The last --val-split of the training set is held out "
                       "for validation; the test set is evaluated once, at the end.")
    t.add_argument("model", nargs="?", help="zoo model (see `pyconvnet models`); omit it with --resume")
    t.add_argument("--dataset", choices=DATASETS, help="data set (default: the model's)")
    t.add_argument("--epochs", type=_int_at_least(1), help="the final epoch, as Keras's epochs: a fresh run trains "
                   "that many, --resume trains on up to it (default 1; with --resume: one more)")
    t.add_argument("--batch-size", type=_int_at_least(1), help="mini-batch size (default: the model's)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default: the model's)")
    t.add_argument("--lr", type=_float_range(0.0, True), help="learning rate (default: the model's)")
    t.add_argument("--weight-decay", type=_float_range(0.0, False),
                   help="L2 penalty added to the gradients, g + wd * W (default 0)")
    t.add_argument("--schedule", choices=("none", "cosine", "step"),
                   help="learning-rate schedule over the epochs: cosine decays to 0 by the final epoch, step "
                   "divides by 10 at 50%% and 75%% of the run (default none)")
    t.add_argument("--augment", choices=("none", "translate", "crop-flip"),
                   help="random augmentation of the training batches: translate shifts by up to 3 pixels, "
                   "crop-flip pads by 4, crops back and flips left-right (CIFAR-10) (default none)")
    t.add_argument("--permute-pixels", type=int, metavar="SEED", help="train/test on pixel-permuted images")
    t.add_argument("--limit", type=_int_at_least(1), help="use only the first N training images")
    t.add_argument("--val-split", type=_fraction, metavar="FRACTION",
                   help=f"fraction of the training set (its last images) held out for validation: the progress "
                   f"lines, --patience and best.npz use it; 0: none (default {VAL_SPLIT})")
    t.add_argument("--patience", type=_int_at_least(1), metavar="N",
                   help="stop early when the validation loss has not improved for N epochs (default: never)")
    t.add_argument("--seed", type=_int_at_least(0), help="seed of the weights, the shuffling, the augmentation and "
                   "the dropout "
                   "masks: the same seed gives the same run (default 0)")
    t.add_argument("--threads", type=_int_at_least(1), help="kernel threads (default: all cores or OMP_NUM_THREADS)")
    t.add_argument("--data-root", help="folder with the data files (default: $PYCONVNET_DATA, cache, system, "
                   "then a verified download)")
    t.add_argument("--no-verify", action="store_true", help="load data files without checking their SHA-256 "
                   "(files that are not the canonical data set, e.g. a generated one)")
    t.add_argument("--out", help="output folder (default runs/MODEL, or runs/MODEL-2, -3, ... if taken; with "
                   "--resume: the checkpoint's folder)")
    t.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    t.add_argument("--resume", metavar="CHECKPOINT", help="continue the run of this checkpoint.npz (model, "
                   "optimizer state, history and settings) up to --epochs")
    t.add_argument("--summary", action="store_true", help="print the model's layers, output shapes and "
                   "parameter counts before training")
    t.add_argument("--json", action="store_true", help="print the results as one JSON object (also written to "
                   "results.json)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument("--distributed", action="store_true", help="data-parallel training over MPI, launched as "
                   "`mpiexec -n N pyconvnet train ... --distributed` (needs pip install 'pyconvnet[mpi]'): "
                   "--batch-size is the global batch, split over the N ranks; rank 0 prints and writes; each "
                   "rank defaults to its share of this host's cores as --threads")
    t.add_argument("--sync-batchnorm", action="store_true", help="with --distributed: batch norm statistics over "
                   "the whole global batch (default: each rank's own samples, as ChainerMN)")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="test-set accuracy and loss of a checkpoint")
    e.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by `pyconvnet train`")
    e.add_argument("--dataset", choices=DATASETS, help="data set (default: the checkpoint's)")
    e.add_argument("--data-root", help="folder with the data files (default: $PYCONVNET_DATA, cache, system, "
                   "then a verified download)")
    e.add_argument("--no-verify", action="store_true", help="load data files without checking their SHA-256")
    e.add_argument("--json", action="store_true", help="print the result as one JSON object")
    e.set_defaults(func=cmd_evaluate)
    r = sub.add_parser("predict", help="classify image files, or one test image",
                       description="Classify your own image files (--image: PNG, JPEG, ... converted to the "
                       "checkpoint's channels, resized to its input size and scaled to [0, 1] as in training), "
                       "or test image --index of the checkpoint's data set.")
    r.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by `pyconvnet train`")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--image", nargs="+", metavar="FILE", help="image files to classify (needs Pillow)")
    which.add_argument("--index", type=int, help="index of a test image (0-9999)")
    r.add_argument("--invert", action="store_true", help="invert the --image files first (MNIST digits are light "
                   "on dark; a drawing is usually dark on light)")
    r.add_argument("--top", type=_int_at_least(1), default=3, help="how many classes to list (default 3)")
    r.add_argument("--dataset", choices=DATASETS, help="data set (default: the checkpoint's)")
    r.add_argument("--data-root", help="folder with the data files, for --index (default: $PYCONVNET_DATA, cache, "
                   "system, then a verified download)")
    r.add_argument("--no-verify", action="store_true", help="load data files without checking their SHA-256")
    r.add_argument("--json", action="store_true", help="print the prediction(s) as JSON, with the probability of "
                   "every class (--image: a list, one object per file)")
    r.add_argument("--quiet", action="store_true", help="print only the predicted class")
    r.set_defaults(func=cmd_predict)
    _add_export_parser(sub)
    m = sub.add_parser("models", help="list the model zoo, or show one model's layers")
    m.add_argument("name", nargs="?", help="a zoo model: print its layers, output shapes and parameter counts")
    m.add_argument("--dataset", choices=DATASETS, help="input images for the summary (default: the model's)")
    m.set_defaults(func=cmd_models)
    x = sub.add_parser("experiment", help="run a paper reproduction experiment")
    xs = x.add_subparsers(dest="experiment", metavar="EXPERIMENT", parser_class=_Parser)
    xs.required = True
    from . import experiments

    for name, (_, help_line) in experiments.EXPERIMENTS.items():
        module = experiments.load(name)
        e = xs.add_parser(name, help=help_line.replace("%", "%%"), description=module.__doc__.split("\n\n")[0])
        module.add_arguments(e)
        e.set_defaults(func=module.run_from_args)
    return p


def main(argv=None):
    global _COMM
    _COMM = None  # a communicator of an earlier main() in this process is not this run's
    try:
        args = make_parser().parse_args(argv)
        # experiments parse their own --epochs (e.g. the speedrun's "9.9" or "2,5,9.9")
        if isinstance(getattr(args, "epochs", None), int) and args.epochs < 1:
            raise CLIError("--epochs: must be >= 1")
        return args.func(args)
    except CLIError as e:
        print(f"{_error_prefix()}: {e}", file=sys.stderr)
        return _end_all_ranks(2)
    except BrokenPipeError:  # e.g. `pyconvnet models | head`: the reader has gone, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 1
    except OSError as e:  # data sets not found (the loader's message says where it looked), unwritable --out, ...
        from .data import DatasetNotFoundError

        if isinstance(e, DatasetNotFoundError):  # in the command line's words: --data-root, not root=
            msg = e.explain(root_option="--data-root DIR", root_label="--data-root", download_option=None)
        else:
            msg = str(e)
        print(f"{_error_prefix()}: {msg}", file=sys.stderr)
        return _end_all_ranks(1)
    except KeyboardInterrupt:
        print("pyconvnet: interrupted", file=sys.stderr)
        return _end_all_ranks(130)


if __name__ == "__main__":
    sys.exit(main())
