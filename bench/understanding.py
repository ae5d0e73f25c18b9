"""Accuracy, macro-F1 and per-category precision/recall/F1 (scikit-learn), and the
confusion-matrix plots (matplotlib, Agg; ASCII category codes on the axes, since the
machine may have no CJK font)."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Sequence

from bench.data import CATEGORY_LABELS, Example
from bench.systems import LABELS, Prediction

MISSING = "(none)"


def scores(examples: Sequence[Example], preds: Sequence[Prediction]) -> Dict:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    assert len(examples) == len(preds)
    yi = [e.intent for e in examples]
    pi = [p.intent or MISSING for p in preds]
    yc = [e.category for e in examples]
    pc = [p.category for p in preds]
    # macro averages over the classes the data has (a class only predicted adds no column)
    intent_labels = sorted(set(yi))
    cat_labels = [c for c in CATEGORY_LABELS if c in set(yc)]
    p, r, f, s = precision_recall_fscore_support(yc, pc, labels=CATEGORY_LABELS, zero_division=0)
    return {
        "n": len(examples),
        "intent_acc": accuracy_score(yi, pi),
        "intent_f1": f1_score(yi, pi, labels=intent_labels, average="macro", zero_division=0),
        "cat_acc": accuracy_score(yc, pc),
        "cat_f1": f1_score(yc, pc, labels=cat_labels, average="macro", zero_division=0),
        "per_category": {c: {"p": float(p[i]), "r": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                         for i, c in enumerate(CATEGORY_LABELS)},
    }


def summarise_folds(fold_scores: List[Dict]) -> Dict:
    """Mean and standard deviation of the headline figures over the folds."""
    out = {"folds": len(fold_scores), "n": sum(s["n"] for s in fold_scores)}
    for k in ("intent_acc", "intent_f1", "cat_acc", "cat_f1"):
        vals = [s[k] for s in fold_scores]
        out[k] = statistics.fmean(vals)
        out[k + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return out


def confusion_plot(examples: Sequence[Example], preds_by_system: Dict[str, Sequence[Prediction]], path: Path,
                   title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import confusion_matrix

    systems = list(preds_by_system)
    cols = 2
    rows = (len(systems) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7.2 * cols, 6.4 * rows), squeeze=False)
    yc = [e.category for e in examples]
    for ax, system in zip(axes.flat, systems):
        pc = [p.category for p in preds_by_system[system]]
        cm = confusion_matrix(yc, pc, labels=CATEGORY_LABELS)
        rows_sum = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows_sum, out=np.zeros_like(cm, dtype=float), where=rows_sum > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(CATEGORY_LABELS)):
            for j in range(len(CATEGORY_LABELS)):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.6 else "black")
        acc = sum(a == b for a, b in zip(yc, pc)) / max(1, len(yc))
        ax.set_title(f"{LABELS[system]}  (category accuracy {acc:.3f})", fontsize=10)
        ax.set_xticks(range(len(CATEGORY_LABELS)))
        ax.set_yticks(range(len(CATEGORY_LABELS)))
        ax.set_xticklabels(CATEGORY_LABELS, rotation=60, ha="right", fontsize=8)
        ax.set_yticklabels(CATEGORY_LABELS, fontsize=8)
        ax.set_xlabel("predicted category")
        ax.set_ylabel("true category")
    for ax in list(axes.flat)[len(systems):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
