"""pyconvnet.plots: the training-curve figure (matplotlib, optional)."""
from __future__ import annotations

import pytest

from pyconvnet.training import History

pytest.importorskip("matplotlib")


@pytest.mark.parametrize("n", [2, 3, 7])
def test_history_epochs_on_integer_ticks(n, tmp_path):
    from pyconvnet.plots import history_figure, plot_history

    h = History(epoch=list(range(1, n + 1)), train_loss=[1.0 / e for e in range(1, n + 1)],
                train_acc=[0.5] * n, val_loss=[1.2] * n, val_acc=[0.4] * n)
    fig = history_figure(h)
    try:
        fig.canvas.draw()
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    plot_history(h, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0
