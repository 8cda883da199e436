"""The training run of tests/test_distributed.py: one process (``train(..., comm=None)``,
called in the test itself) or every rank of ``mpiexec -n N python tests/mpi_worker.py``.

Writes rank 0's final weights and history into ``--out`` (an .npz and a .json) and, with
``--checkpoint``, a checkpoint after every epoch (rank 0); ``--fault raise|kill`` makes
rank ``--fault-rank`` raise or SIGKILL itself at step ``--fault-step`` of epoch
``--fault-epoch`` (1-based), to test that the other ranks end too."""
from __future__ import annotations

import argparse
import json
import os
import signal

import numpy as np

from pyconvnet import data, losses, models, optim
from pyconvnet.checkpoint import save_checkpoint
from pyconvnet.training import Callback, CheckpointBest, fit


def make_data(n, size, seed=0):
    """Learnable synthetic digits: the label is which of 10 bands holds a bright bar."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = rng.integers(0, 60, (n, 1, size, size)).astype(np.uint8)
    rows = (y * size) // 10
    for i in range(n):
        x[i, 0, rows[i]:rows[i] + max(1, size // 10), :] = 250
    return x, y


def build(name, size):
    if name == "lenet5":
        return models.lenet5(seed=3)
    if name == "keras_cnn":  # with its two Dropout layers
        return models.keras_cnn(size=size, seed=3)
    if name == "cifar_cnn":  # with BatchNorm
        return models.cifar_cnn(in_channels=1, width=4, seed=3)
    raise ValueError(name)


class FaultyLoss(losses.SoftmaxCrossEntropy):
    """Fails at training step ``at`` (1-based) of epoch ``epoch`` (0-based); ArmFault tells it
    the epoch and restarts the count, and validation (after the steps) is never reached."""

    def __init__(self, fault, epoch, at):
        super().__init__()
        self.fault, self.epoch, self.at, self.step, self.now = fault, epoch, at, 0, -1

    def forward(self, logits, labels):
        self.step += 1
        if self.now == self.epoch and self.step == self.at:
            if self.fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected fault")
        return super().forward(logits, labels)


class ArmFault(Callback):
    def __init__(self, loss):
        self.loss = loss

    def on_epoch_begin(self, epoch, trainer):
        self.loss.now, self.loss.step = epoch, 0


class SaveEachEpoch(Callback):
    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, epoch, logs, trainer):
        save_checkpoint(self.path, trainer.model, trainer.optimizer, meta={"epoch": epoch + 1})


def train(a, comm=None):
    size = 28 if a.model == "lenet5" else (32 if a.model == "cifar_cnn" else 12)
    x, y = make_data(a.n, size)
    val = make_data(37, size, seed=1)
    model = build(a.model, size)
    opt = {"sgd": lambda p: optim.SGD(p, lr=0.05), "momentum": lambda p: optim.MomentumSGD(p, lr=0.02),
           "adam": lambda p: optim.Adam(p, lr=0.003)}[a.optimizer](model.parameters())
    rank = 0 if comm is None else comm.rank
    loss = losses.SoftmaxCrossEntropy()
    callbacks = [SaveEachEpoch(a.checkpoint)] if a.checkpoint and rank == 0 else []
    if a.best:  # on every rank: fit lets rank 0 alone write
        callbacks.append(CheckpointBest(os.path.join(a.best, f"best-rank{rank}.npz"), monitor="val_acc"))
    if a.fault and rank == a.fault_rank:
        loss = FaultyLoss(a.fault, a.fault_epoch - 1, a.fault_step)
        callbacks.append(ArmFault(loss))
    augment = (lambda xb, rng: data.random_translate(xb, 2, rng)) if a.augment else None
    history = fit(model, (x, y), epochs=a.epochs, batch_size=a.batch, optimizer=opt, loss=loss, validation=val,
                  seed=a.seed, augment=augment, verbose=False, callbacks=callbacks, distributed=comm)
    state = model.state_dict()
    if comm is not None:  # every rank must end with rank 0's weights, bit for bit
        digest = [float(np.sum(np.abs(v.astype(np.float64)))) for v in state.values()]
        agree = all(d == comm.comm.allgather(digest)[0] for d in comm.comm.allgather(digest))
    else:
        agree = True
    info = {"history": history.as_dict(), "ranks_agree": agree, "size": 1 if comm is None else comm.size,
            "threads": 0 if comm is None else comm.threads, "allreduce_calls": 0 if comm is None else
            comm.allreduce_calls}
    if rank == 0 and a.out:
        np.savez(a.out + ".npz", **state)
        with open(a.out + ".json", "w") as f:
            json.dump(info, f)
    return state, info


def parse(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="lenet5")
    p.add_argument("--n", type=int, default=203)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--augment", action="store_true")
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--bucket-mib", type=float)
    p.add_argument("--out")
    p.add_argument("--checkpoint")
    p.add_argument("--best", help="a folder: CheckpointBest into best-rank{rank}.npz on every rank")
    p.add_argument("--fault", choices=("raise", "kill"))
    p.add_argument("--fault-rank", type=int, default=1)
    p.add_argument("--fault-epoch", type=int, default=2)
    p.add_argument("--fault-step", type=int, default=2)
    return p.parse_args(argv)


if __name__ == "__main__":
    from pyconvnet.distributed import Communicator

    args = parse()
    train(args, Communicator(sync_batchnorm=args.sync_bn, bucket_mib=args.bucket_mib))
