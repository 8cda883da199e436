"""Command line: ``pyconvnet train|evaluate|predict|export|models`` (also ``python -m pyconvnet``)."""
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
# Defaults per model: what the seed documents use (the LeNet-5 translation report: SGD lr 0.05; the Kyoto Univ. exercise: Adadelta).
MODEL_DEFAULTS = {
    "mlp3": dict(dataset="mnist", optimizer="sgd", lr=0.5, batch_size=100),
    "lenet5": dict(dataset="mnist", optimizer="sgd", lr=0.05, batch_size=64),
    "keras_cnn": dict(dataset="mnist", optimizer="adadelta", lr=1.0, batch_size=32),
    "cifar_cnn": dict(dataset="cifar10", optimizer="adam", lr=0.001, batch_size=128),
    "robust_lenet5": dict(dataset="mnist", optimizer="sgd", lr=0.05, batch_size=64),
}


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _load_dataset(name, root, verify=True):
    from . import data

    loader = {"mnist": data.mnist, "fashion-mnist": data.fashion_mnist, "cifar10": data.cifar10}[name]
    try:
        return loader(root=root, verify=verify)
    except data.ChecksumError as e:  # e.g. files that are not the canonical data set
        raise CLIError(f"{e} (command line: --no-verify)") from None
    except ValueError as e:  # malformed files: the parser's message names the file
        raise CLIError(str(e)) from None


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


def _make_optimizer(name, model, lr, weight_decay, schedule="none", epochs=1):
    from . import optim

    cls = {"sgd": optim.SGD, "momentum": optim.MomentumSGD, "adagrad": optim.AdaGrad, "rmsprop": optim.RMSProp,
           "adadelta": optim.AdaDelta, "adam": optim.Adam}[name]
    kw = {} if lr is None else {"lr": lr}
    # cosine decays to 0 over the run; step divides by 10 at 50% and 75% of it
    scheduler = {"none": None, "cosine": lambda: optim.CosineAnnealing(T_max=epochs),
                 "step": lambda: optim.MultiStepLR([max(1, epochs // 2), max(1, 3 * epochs // 4)], 0.1)}[schedule]
    if scheduler is not None:
        kw["scheduler"] = scheduler()
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
    from .models import MODELS

    for name, (_, desc) in MODELS.items():
        d = MODEL_DEFAULTS[name]
        print(f"{name:14s} {desc}  [default: --dataset {d['dataset']} --optimizer {d['optimizer']} --lr {d['lr']}]")
    return 0


def cmd_train(args):
    from . import losses, set_num_threads
    from .checkpoint import save_checkpoint
    from .models import MODELS, build
    from .training import CheckpointBest, TrainingDiverged, fit, evaluate

    if args.model not in MODELS:
        raise CLIError(f"unknown model {args.model!r}; choose from: {', '.join(MODELS)}")
    d = MODEL_DEFAULTS[args.model]
    dataset = args.dataset or d["dataset"]
    optimizer = args.optimizer or d["optimizer"]
    lr = args.lr if args.lr is not None else d["lr"]
    batch_size = args.batch_size or d["batch_size"]
    if args.threads:
        set_num_threads(args.threads)
    ds = _load_dataset(dataset, args.data_root, verify=not args.no_verify)
    xtr, ytr, xte, yte = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    if args.permute_pixels is not None:
        from .data import PixelPermutation

        perm = PixelPermutation(args.permute_pixels)
        xtr, xte = perm(xtr), perm(xte)
    try:
        model = build(args.model, xtr.shape[1:], classes=len(ds.classes), seed=args.seed)
    except ValueError as e:  # e.g. cifar_cnn on 28x28 digits
        raise CLIError(f"{e} (--dataset {dataset})") from None
    opt = _make_optimizer(optimizer, model, lr, args.weight_decay, args.schedule, args.epochs)
    loss = losses.SoftmaxCrossEntropy()
    os.makedirs(args.out, exist_ok=True)
    meta = {"model": args.model, "dataset": dataset, "optimizer": optimizer, "lr": lr, "batch_size": batch_size,
            "schedule": args.schedule, "augment": args.augment, "weight_decay": args.weight_decay,
            "seed": args.seed, "permute_pixels": args.permute_pixels, "classes": list(ds.classes)}
    callbacks = [CheckpointBest(os.path.join(args.out, "best.npz"), monitor="val_acc", meta=meta)]
    t0 = time.perf_counter()
    try:
        history = fit(model, (xtr, ytr), epochs=args.epochs, batch_size=batch_size, optimizer=opt, loss=loss,
                      validation=(xte, yte), seed=args.seed, callbacks=callbacks,
                      augment=_augmenter(args.augment, args.seed), verbose=not args.quiet)
    except TrainingDiverged as e:
        raise CLIError(str(e)) from None
    wall = time.perf_counter() - t0
    _, acc = evaluate(model, (xte, yte))
    meta.update(epoch=len(history.epoch), history=history.as_dict(), test_acc=acc)
    save_checkpoint(os.path.join(args.out, "checkpoint.npz"), model, opt, meta=meta)
    history.to_json(os.path.join(args.out, "history.json"))
    _plots(args.out, history, model, xte, yte, ds.classes, quiet=args.quiet)
    per_epoch = wall / max(len(history.epoch), 1)
    print(f"{args.model} on {dataset}: test accuracy {acc * 100:.2f}% after {len(history.epoch)} epoch(s), "
          f"{per_epoch:.1f} s/epoch; checkpoint in {os.path.join(args.out, 'checkpoint.npz')}")
    return 0


def _plots(out, history, model, xte, yte, classes, quiet):
    try:
        from .plots import plot_confusion, plot_history
    except ImportError:
        return
    try:
        plot_history(history, os.path.join(out, "curves.png"))
        from .metrics import confusion_matrix
        from .training import predict

        cm = confusion_matrix(yte, np.argmax(predict(model, xte), axis=1), num_classes=len(classes))
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
        _, acc = evaluate(ck.model, (xte, yte))
    except (ValueError, TypeError) as e:
        raise CLIError(f"the checkpoint's model does not take the {dataset} test images: {e}") from None
    print(f"{ck.meta.get('model', 'model')} on {dataset} test set: accuracy {acc * 100:.2f}% ({len(yte)} images)")
    return 0


def cmd_predict(args):
    from .training import predict

    ck = _load(args.checkpoint)
    dataset, xte, yte, classes = _test_images(ck, args)
    if not 0 <= args.index < len(xte):
        raise CLIError(f"--index: must be in 0..{len(xte) - 1}, got {args.index}")
    try:
        logits = predict(ck.model, xte[args.index:args.index + 1])[0]
    except (ValueError, TypeError) as e:
        raise CLIError(f"the checkpoint's model does not take the {dataset} test images: {e}") from None
    pred = int(np.argmax(logits))
    if args.json:
        print(json.dumps({"index": args.index, "predicted": pred, "label": int(yte[args.index])}))
    else:
        print(f"{pred}" if args.quiet else
              f"test image {args.index}: predicted {pred} ({classes[pred]}), true label {int(yte[args.index])}")
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
    p = _Parser(prog="pyconvnet", description="Train and use convolutional networks with pyconvnet.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    t = sub.add_parser("train", help="train a zoo model on a data set", description="Train a zoo model; writes "
                       "checkpoint.npz, best.npz, history.json and plots into --out.")
    t.add_argument("model", help="zoo model (see `pyconvnet models`)")
    t.add_argument("--dataset", choices=DATASETS, help="data set (default: the model's)")
    t.add_argument("--epochs", type=int, default=1, help="number of epochs (default 1)")
    t.add_argument("--batch-size", type=_int_at_least(1), help="mini-batch size (default: the model's)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default: the model's)")
    t.add_argument("--lr", type=_float_range(0.0, True), help="learning rate (default: the model's)")
    t.add_argument("--weight-decay", type=_float_range(0.0, False), default=0.0)
    t.add_argument("--schedule", default="none", choices=("none", "cosine", "step"),
                   help="learning-rate schedule over the epochs (default none)")
    t.add_argument("--augment", default="none", choices=("none", "translate", "crop-flip"))
    t.add_argument("--permute-pixels", type=int, metavar="SEED", help="train/test on pixel-permuted images")
    t.add_argument("--limit", type=_int_at_least(1), help="use only the first N training images")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=_int_at_least(1), help="kernel threads (default: all cores or OMP_NUM_THREADS)")
    t.add_argument("--data-root", help="folder with the data files (default: $PYCONVNET_DATA, cache, system)")
    t.add_argument("--no-verify", action="store_true", help="load data files without checking their SHA-256 "
                   "(files that are not the canonical data set, e.g. a generated one)")
    t.add_argument("--out", default="runs/latest", help="output folder (default runs/latest)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="test-set accuracy of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", choices=DATASETS)
    e.add_argument("--data-root")
    e.add_argument("--no-verify", action="store_true", help="load data files without checking their SHA-256")
    e.set_defaults(func=cmd_evaluate)
    r = sub.add_parser("predict", help="classify one test image (index 0-9999)")
    r.add_argument("checkpoint")
    r.add_argument("--index", type=int, required=True)
    r.add_argument("--dataset", choices=DATASETS)
    r.add_argument("--data-root")
    r.add_argument("--no-verify", action="store_true", help="load data files without checking their SHA-256")
    r.add_argument("--json", action="store_true")
    r.add_argument("--quiet", action="store_true", help="print only the predicted class")
    r.set_defaults(func=cmd_predict)
    _add_export_parser(sub)
    m = sub.add_parser("models", help="list the model zoo")
    m.set_defaults(func=cmd_models)
    x = sub.add_parser("experiment", help="run a paper reproduction experiment")
    xs = x.add_subparsers(dest="experiment", metavar="EXPERIMENT", parser_class=_Parser)
    xs.required = True
    from .experiments import relaxed_mnist

    rm = xs.add_parser("relaxed-mnist", help="the relaxed receptive field paper: learned receptive fields on MNIST / pixel-permuted MNIST",
                       description=relaxed_mnist.__doc__.split("\n\n")[0])
    relaxed_mnist.add_arguments(rm)
    rm.set_defaults(func=relaxed_mnist.run_from_args)
    return p


def main(argv=None):
    try:
        args = make_parser().parse_args(argv)
        if getattr(args, "epochs", 1) is not None and getattr(args, "epochs", 1) < 1:
            raise CLIError("--epochs: must be >= 1")
        return args.func(args)
    except CLIError as e:
        print(f"pyconvnet: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # data sets not found (the loader's message says where it looked), unwritable --out, ...
        print(f"pyconvnet: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pyconvnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
