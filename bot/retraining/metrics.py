"""Classification figures and confusion-matrix pictures, shared by the retraining
evaluation (bot/retraining/evaluate.py) and the benchmark (bench/understanding.py).

scikit-learn for the numbers, matplotlib (Agg) for the pictures, both imported when used;
no Rasa. The axes show the labels as given: intent names and the ASCII category codes,
so no CJK font is needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def accuracy(truth: Sequence[str], pred: Sequence[str]) -> float:
    """Share of exact matches; 0.0 when there is nothing to score."""
    if len(truth) == 0:
        return 0.0
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(truth, pred))


def label_scores(truth: Sequence[str], pred: Sequence[str],
                 labels: Sequence[str] | None = None) -> dict[str, Any]:
    """{"n", "accuracy", "macro_f1", "per_label": {label: {"p", "r", "f1", "support"}}}, unrounded.

    labels: the per_label rows, in this order (default: the labels in truth, sorted); a row
    may have support 0. macro_f1 averages over those rows that occur in truth: a label only
    ever predicted adds no column, a true label never predicted counts with F1 0. Division
    by zero (nothing predicted or nothing true for a label) gives 0, without a warning.
    No examples: n 0, accuracy and macro_f1 None, per_label empty."""
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} true labels but {len(pred)} predictions")
    if len(truth) == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "per_label": {}}
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    rows: list[str] = sorted(set(truth)) if labels is None else list(labels)
    seen = set(truth)
    averaged = [lab for lab in rows if lab in seen]
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=rows, zero_division=0)
    macro = f1_score(truth, pred, labels=averaged, average="macro", zero_division=0) if averaged else 0.0
    return {
        "n": len(truth),
        "accuracy": accuracy(truth, pred),
        "macro_f1": float(macro),
        "per_label": {lab: {"p": float(p[i]), "r": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, lab in enumerate(rows)},
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _matrix(ax, truth: Sequence[str], pred: Sequence[str], labels: Sequence[str], xlabel: str, ylabel: str) -> None:
    """One matrix on ax: colour is the share of the true row, the number the count."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(truth, pred, labels=list(labels))
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)))
    ax.set_yticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _save(plt, fig, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def draw_confusion(truth: Sequence[str], pred: Sequence[str], path: Path, title: str,
                   labels: Sequence[str] | None = None, xlabel: str = "predicted",
                   ylabel: str = "true") -> Path:
    """One confusion matrix as a PNG at path (folders made). labels: both axes, in this
    order (default: every label in truth or pred, sorted)."""
    plt = _pyplot()
    labels = sorted(set(truth) | set(pred)) if labels is None else list(labels)
    size = max(6.0, 0.36 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    _matrix(ax, truth, pred, labels, xlabel, ylabel)
    ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)


def draw_confusion_grid(truth: Sequence[str], panels: Mapping[str, Sequence[str]], path: Path, title: str,
                        labels: Sequence[str] | None = None, xlabel: str = "predicted",
                        ylabel: str = "true", cols: int = 2) -> Path:
    """One matrix per entry of panels ({panel title: predictions}, cols to a row) as a PNG.
    labels: as in draw_confusion, over every panel's predictions."""
    plt = _pyplot()
    if labels is None:
        labels = sorted(set(truth).union(*map(set, panels.values())))
    labels = list(labels)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.2 * cols, 6.4 * rows), squeeze=False)
    for ax, (name, pred) in zip(axes.flat, panels.items()):
        _matrix(ax, truth, pred, labels, xlabel, ylabel)
        ax.set_title(name, fontsize=10)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    return _save(plt, fig, path)
