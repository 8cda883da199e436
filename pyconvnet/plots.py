"""Training plots (matplotlib, optional: ``pip install 'pyconvnet[plot]'``)."""
from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history, path):
    """Loss and accuracy per epoch, train vs validation, side by side."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ep = history.epoch
    a.plot(ep, history.train_loss, "o-", label="train")
    if any(v is not None for v in history.val_loss):
        a.plot(ep, history.val_loss, "s-", label="validation")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    a.legend()
    if any(v is not None for v in history.train_acc):
        b.plot(ep, history.train_acc, "o-", label="train")
    if any(v is not None for v in history.val_acc):
        b.plot(ep, history.val_acc, "s-", label="validation")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(cm, classes, path):
    """Confusion matrix image (rows: true class, columns: predicted)."""
    plt = _pyplot()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > thresh else "black")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
