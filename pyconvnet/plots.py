"""Pictures: training curves, confusion matrices, receptive fields (matplotlib,
optional: ``pip install 'pyconvnet[plot]'``; Pillow for bare PNG images)."""
from __future__ import annotations

import numpy as np

__all__ = ["plot_history", "history_figure", "plot_confusion", "plot_receptive_fields", "write_png"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def history_figure(history, title=None, val_label="validation"):
    """The figure of :func:`plot_history` (loss and accuracy per epoch, train vs validation),
    epochs on integer ticks; ``title`` above both panels, ``val_label`` the second curve's
    name (e.g. "test" when the test set is what fit validated on); the caller closes it."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ep = history.epoch
    a.plot(ep, history.train_loss, "o-", label="train")
    if any(v is not None for v in history.val_loss):
        a.plot(ep, history.val_loss, "s-", label=val_label)
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    a.legend()
    if any(v is not None for v in history.train_acc):
        b.plot(ep, history.train_acc, "o-", label="train")
    if any(v is not None for v in history.val_acc):
        b.plot(ep, history.val_acc, "s-", label=val_label)
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    b.legend()
    for ax in (a, b):  # epochs are whole numbers: no 1.25, 1.5 ticks on short runs
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, path, title=None, val_label="validation"):
    """Loss and accuracy per epoch, train vs validation, side by side (the four curves of the
    Kyoto Univ. exercise's B1 on one figure)."""
    fig = history_figure(history, title=title, val_label=val_label)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


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


def write_png(path, rgb):
    """Writes an (H, W, 3) uint8 array as a PNG of H x W pixels (Pillow, else matplotlib)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb: expected an (H, W, 3) array, got shape {rgb.shape}")
    try:
        from PIL import Image
    except ImportError:
        try:
            import matplotlib.image as mpimg
        except ImportError:
            raise ImportError("write_png needs Pillow or matplotlib: pip install 'pyconvnet[plot]'") from None
        mpimg.imsave(path, rgb, format="png")
        return path
    Image.fromarray(rgb, "RGB").save(path, format="PNG")
    return path


def _field_pixels(index, j, perm):
    """Original-image pixel of the centre (slot 0) and of the other slots of output j."""
    row = np.asarray(index)[j]
    to_orig = (lambda i: int(perm[i])) if perm is not None else int
    return to_orig(row[0]), [to_orig(i) for i in row[1:] if i >= 0]


def _output_for_pixel(pixel, perm):
    """Output position whose centre is original pixel ``pixel`` (identity centre)."""
    if perm is None:
        return int(pixel)
    return int(np.argsort(perm)[pixel])


def plot_receptive_fields(index, shape, path, centres=((15, 15), (13, 25), (25, 25)), perm=None, title=None,
                          scale=8):
    """The relaxed receptive field paper's Fig. 4.1: for each centre pixel (row, col), 1-based as in the paper, the image grid
    with the centre in red and the pixels of the other slots in white. ``index`` (n_out, k) with
    slot 0 the centre; ``perm`` maps positions of permuted data back to original pixels.
    Uses matplotlib when present, else writes the panels side by side with :func:`write_png`
    (Pillow)."""
    h, w = shape
    panels = []
    for (r, c) in centres:
        pixel = (r - 1) * w + (c - 1)
        j = _output_for_pixel(pixel, None if perm is None else np.asarray(perm))
        centre, others = _field_pixels(index, j, None if perm is None else np.asarray(perm))
        img = np.zeros((h, w, 3), np.uint8)
        img[..., :] = 40
        for p in others:
            img[p // w, p % w] = 255
        img[centre // w, centre % w] = (230, 30, 30)
        panels.append(img)
    try:
        plt = _pyplot()
    except ImportError:
        gap = np.full((h * scale, scale, 3), 128, np.uint8)
        big = [np.kron(p, np.ones((scale, scale, 1), np.uint8)) for p in panels]
        return write_png(path, np.concatenate([x for b in big for x in (b, gap)][:-1], axis=1))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    axes = np.atleast_1d(axes)
    for ax, img, (r, c) in zip(axes, panels, centres):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"centre ({r}, {c})")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
