"""Tests for pyconvnet.metrics against naive loops written here."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyconvnet.metrics import accuracy, confusion_matrix, top_k_accuracy


def test_accuracy_from_labels_and_scores():
    y = np.array([0, 1, 2, 1])
    assert accuracy(y, np.array([0, 1, 1, 1])) == 0.75
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])  # last row: a tie
    assert accuracy(y, scores) == 0.5  # argmax takes the first maximum: row 3 predicts 0


def test_top_k():
    y = np.array([2, 0, 1])
    s = np.array([[0.1, 0.5, 0.4], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]])
    assert top_k_accuracy(y, s, k=1) == 0.0
    # row 0: class 2 ranks second; row 2: the 0.3 tie ranks class 0 before class 1, so class 1 is third
    assert top_k_accuracy(y, s, k=2) == pytest.approx(1 / 3)
    assert top_k_accuracy(y, s, k=3) == 1.0


@given(hnp.arrays(np.int8, st.tuples(st.integers(1, 12), st.integers(2, 5)), elements=st.integers(-3, 3)),
       st.data())
def test_top_k_matches_a_stable_sort(scores, data):
    n, c = scores.shape
    y = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    assert top_k_accuracy(y, scores, k=1) == accuracy(y, scores)
    for k in range(1, c + 1):
        ranked = [sorted(range(c), key=lambda j: (-int(row[j]), j)) for row in scores]  # stable, lower index first
        want = np.mean([yi in r[:k] for yi, r in zip(y, ranked)])
        assert top_k_accuracy(y, scores, k=k) == pytest.approx(want)


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40))
def test_confusion_matrix_against_loop(pairs):
    t = np.array([a for a, _ in pairs])
    p = np.array([b for _, b in pairs])
    cm = confusion_matrix(t, p, num_classes=5)
    want = np.zeros((5, 5), np.int64)
    for a, b in pairs:
        want[a, b] += 1  # row = true class, column = predicted class
    np.testing.assert_array_equal(cm, want)
    assert cm.sum() == len(pairs) and np.trace(cm) / len(pairs) == pytest.approx(accuracy(t, p))
    assert confusion_matrix(t, p).shape[0] == max(t.max(), p.max()) + 1


def test_confusion_matrix_from_scores():
    cm = confusion_matrix(np.array([0, 1]), np.array([[0.2, 0.8], [0.1, 0.9]]))
    np.testing.assert_array_equal(cm, [[0, 1], [0, 1]])


def test_metric_errors():
    with pytest.raises(TypeError, match="^y_true: expected integer class labels"):
        accuracy(np.array([0.0, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="^y_pred: expected 2 predictions"):
        accuracy(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="^y_true: accuracy of an empty set"):
        accuracy(np.array([], int), np.array([], int))
    with pytest.raises(ValueError, match="^k: expected a positive int"):
        top_k_accuracy(np.array([0]), np.zeros((1, 3)), k=0)
    with pytest.raises(ValueError, match="^y_true: label 3 is out of range"):
        top_k_accuracy(np.array([3]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="^num_classes: labels up to 4"):
        confusion_matrix(np.array([4]), np.array([0]), num_classes=3)
    with pytest.raises(ValueError, match="^y_true: labels must be non-negative"):
        confusion_matrix(np.array([-1]), np.array([0]))
