"""Accuracy, macro-F1 and per-category precision/recall/F1, and the confusion-matrix
plots (ASCII category codes on the axes, since the machine may have no CJK font), computed
and drawn by bot.retraining.metrics."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from bench.data import CATEGORY_LABELS, Example
from bench.systems import LABELS, Prediction
from bot.retraining.metrics import accuracy, draw_confusion_grid, label_scores

MISSING = "(none)"


def scores(examples: Sequence[Example], preds: Sequence[Prediction]) -> dict:
    assert len(examples) == len(preds)
    yc = [e.category for e in examples]
    pc = [p.category for p in preds]
    # macro averages over the classes the data has (a class only predicted adds no column)
    intent = label_scores([e.intent for e in examples], [p.intent or MISSING for p in preds])
    cat = label_scores(yc, pc, labels=CATEGORY_LABELS)
    return {
        "n": len(examples),
        "intent_acc": intent["accuracy"],
        "intent_f1": intent["macro_f1"],
        "cat_acc": cat["accuracy"],
        "cat_f1": cat["macro_f1"],
        "per_category": cat["per_label"],
    }


def summarise_folds(fold_scores: list[dict]) -> dict:
    """Mean and standard deviation of the headline figures over the folds."""
    out = {"folds": len(fold_scores), "n": sum(s["n"] for s in fold_scores)}
    for k in ("intent_acc", "intent_f1", "cat_acc", "cat_f1"):
        vals = [s[k] for s in fold_scores]
        out[k] = statistics.fmean(vals)
        out[k + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return out


def confusion_plot(examples: Sequence[Example], preds_by_system: dict[str, Sequence[Prediction]], path: Path,
                   title: str) -> Path:
    yc = [e.category for e in examples]
    panels = {}
    for system, preds in preds_by_system.items():
        pc = [p.category for p in preds]
        panels[f"{LABELS[system]}  (category accuracy {accuracy(yc, pc):.3f})"] = pc
    return draw_confusion_grid(yc, panels, path, title, labels=CATEGORY_LABELS,
                               xlabel="predicted category", ylabel="true category")
