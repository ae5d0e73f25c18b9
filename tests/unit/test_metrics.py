"""bot/retraining/metrics.py: the figures on a small example worked out by hand, and the pictures."""

from __future__ import annotations

import warnings

import pytest

from bot.retraining.metrics import accuracy, draw_confusion, draw_confusion_grid, label_scores

# a: tp 2, fp 1 (#4), fn 1 (#2) -> P 2/3, R 2/3, F1 2/3
# b: tp 1, fp 1 (#2), fn 1 (#4) -> P 1/2, R 1/2, F1 1/2
# c: never predicted            -> P 0/0 = 0, R 0/1 = 0, F1 0
# d: only predicted (#5)        -> no row by default, never in the macro average
TRUTH = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "a", "d"]
EXACT = pytest.approx  # rel 1e-6 is far below the 3-4 digits the callers keep
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_label_scores_by_hand():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0: no UndefinedMetricWarning
        s = label_scores(TRUTH, PRED)
    assert s["n"] == 6
    assert s["accuracy"] == 0.5
    assert s["macro_f1"] == EXACT((2 / 3 + 1 / 2 + 0) / 3)  # 7/18, c counted with F1 0
    assert list(s["per_label"]) == ["a", "b", "c"]
    assert s["per_label"]["a"] == {"p": EXACT(2 / 3), "r": EXACT(2 / 3), "f1": EXACT(2 / 3), "support": 3}
    assert s["per_label"]["b"] == {"p": 0.5, "r": 0.5, "f1": 0.5, "support": 2}
    assert s["per_label"]["c"] == {"p": 0.0, "r": 0.0, "f1": 0.0, "support": 1}
    assert all(type(v) is float for row in s["per_label"].values() for k, v in row.items() if k != "support")
    assert type(s["accuracy"]) is float and type(s["macro_f1"]) is float


def test_given_labels_set_rows_and_order_but_macro_counts_only_true_labels():
    s = label_scores(TRUTH, PRED, labels=["d", "c", "b", "a", "e"])
    assert list(s["per_label"]) == ["d", "c", "b", "a", "e"]
    # d: predicted once, never true: P 0/1, R 0/0 -> 0; e: in neither
    assert s["per_label"]["d"] == {"p": 0.0, "r": 0.0, "f1": 0.0, "support": 0}
    assert s["per_label"]["e"] == {"p": 0.0, "r": 0.0, "f1": 0.0, "support": 0}
    assert s["macro_f1"] == EXACT(7 / 18)  # same as without d and e
    assert s["accuracy"] == 0.5


def test_perfect_and_empty_and_mismatched():
    assert label_scores(["x", "y"], ["x", "y"]) == {
        "n": 2, "accuracy": 1.0, "macro_f1": 1.0,
        "per_label": {"x": {"p": 1.0, "r": 1.0, "f1": 1.0, "support": 1},
                      "y": {"p": 1.0, "r": 1.0, "f1": 1.0, "support": 1}}}
    assert label_scores([], []) == {"n": 0, "accuracy": None, "macro_f1": None, "per_label": {}}
    assert accuracy([], []) == 0.0
    assert accuracy(TRUTH, PRED) == 0.5
    with pytest.raises(ValueError):
        label_scores(["a"], [])


def test_retraining_scores_round_the_same_figures():
    from bot.retraining.evaluate import scores

    assert scores(TRUTH, PRED) == {
        "n": 6, "accuracy": 0.5, "macro_f1": 0.3889,
        "per_intent": {"a": {"p": 0.667, "r": 0.667, "f1": 0.667, "support": 3},
                       "b": {"p": 0.5, "r": 0.5, "f1": 0.5, "support": 2},
                       "c": {"p": 0.0, "r": 0.0, "f1": 0.0, "support": 1}}}
    assert scores([], []) == {"n": 0, "accuracy": None, "macro_f1": None, "per_intent": {}}


def test_bench_scores_keep_their_keys():
    from bench.data import CATEGORY_LABELS, Example
    from bench.systems import Prediction
    from bench.understanding import scores

    dog, noise, none = "dog", "noise", "none"
    assert {dog, noise, none} <= set(CATEGORY_LABELS)
    examples = [Example("t1", dog), Example("t2", dog), Example("t3", "greet"), Example("t4", noise)]
    preds = [Prediction(dog, dog), Prediction(None, none), Prediction("greet", none), Prediction(dog, dog)]
    s = scores(examples, preds)
    assert set(s) == {"n", "intent_acc", "intent_f1", "cat_acc", "cat_f1", "per_category"}
    assert (s["n"], s["intent_acc"], s["cat_acc"]) == (4, 0.5, 0.5)
    # intents dog (P 1/2, R 1/2), greet (1, 1), noise (0, 0); "(none)" only predicted
    assert s["intent_f1"] == EXACT((0.5 + 1 + 0) / 3)
    # categories dog (P 1/2, R 1/2), none (1/2, 1: F1 2/3), noise (0, 0); other codes support 0
    assert s["cat_f1"] == EXACT((0.5 + 2 / 3 + 0) / 3)
    assert list(s["per_category"]) == CATEGORY_LABELS
    assert s["per_category"][dog] == {"p": 0.5, "r": 0.5, "f1": 0.5, "support": 2}
    assert s["per_category"][none] == {"p": 0.5, "r": 1.0, "f1": EXACT(2 / 3), "support": 1}
    assert s["per_category"]["heating"] == {"p": 0.0, "r": 0.0, "f1": 0.0, "support": 0}


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


def test_draw_confusion_writes_a_png(tmp_path):
    path = draw_confusion(TRUTH, PRED, tmp_path / "new" / "confusion.png", "candidate")
    assert path == tmp_path / "new" / "confusion.png"
    _assert_png(path)


def test_draw_confusion_grid_writes_a_png(tmp_path):
    panels = {"first": PRED, "second": TRUTH, "third": ["a"] * 6}  # odd count: one empty panel
    path = draw_confusion_grid(TRUTH, panels, tmp_path / "grid.png", "systems", labels=["a", "b", "c", "d"])
    _assert_png(path)
