"""Candidate against the active model: the held-out split (tests/data/test_split.jsonl,
never trained on) and the reviewed inbox examples. Per-intent precision/recall/F1
(scikit-learn) and a confusion-matrix picture (matplotlib, Agg)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sqlalchemy.engine import Engine

Example = Tuple[str, str]  # (text, true label)


def split_examples(path: Path) -> List[Example]:
    rows = [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]
    # complaints are scored by category, everything else by intent (as the accuracy test does)
    return [(r["text"], r.get("category") or r["intent"]) for r in rows]


def predicted_label(parse: Dict[str, Any]) -> str:
    """What the model thinks, fallback or not: its best-ranked intent."""
    for r in parse.get("intent_ranking") or []:
        if r.get("name") and r["name"] != "nlu_fallback":
            return r["name"]
    return (parse.get("intent") or {}).get("name") or "(none)"


def scores(truth: Sequence[str], pred: Sequence[str]) -> Dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    if not truth:
        return {"n": 0, "accuracy": None, "macro_f1": None, "per_intent": {}}
    labels = sorted(set(truth))
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    return {
        "n": len(truth),
        "accuracy": round(float(accuracy_score(truth, pred)), 4),
        "macro_f1": round(float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)), 4),
        "per_intent": {lab: {"p": round(float(p[i]), 3), "r": round(float(r[i]), 3), "f1": round(float(f[i]), 3),
                             "support": int(s[i])} for i, lab in enumerate(labels)},
    }


def confusion_png(truth: Sequence[str], pred: Sequence[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(truth) | set(pred))
    cm = confusion_matrix(truth, pred, labels=labels)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    size = max(6.0, 0.36 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)))
    ax.set_yticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)  # ASCII codes: no CJK font needed
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def evaluate_model(archive: Path, split: Sequence[Example], reviewed: Sequence[Example],
                   picture: Optional[Path] = None, title: str = "") -> Dict[str, Any]:
    from bot.explain import Parser

    parser = Parser(Path(archive))
    split_pred = [predicted_label(parser.parse(t)) for t, _ in split]
    reviewed_pred = [predicted_label(parser.parse(t)) for t, _ in reviewed]
    out = {
        "model": str(archive),
        "split": scores([y for _, y in split], split_pred),
        "reviewed": scores([y for _, y in reviewed], reviewed_pred),
    }
    if picture is not None and split:
        confusion_png([y for _, y in split], split_pred, picture, title)
        out["confusion_png"] = str(picture)
    return out


def compare(engine: Engine, candidate: Path, baseline: Optional[Path], settings: Any, work: Path) -> Dict[str, Any]:
    from bot.retraining.inbox import accepted_examples

    split = split_examples(settings.test_split)
    with engine.connect() as conn:
        reviewed = [(e["text"], e["intent"]) for e in accepted_examples(conn)]
    metrics: Dict[str, Any] = {
        "candidate": evaluate_model(candidate, split, reviewed, work / "confusion.png", "candidate (held-out split)"),
        "baseline": None,
        "margin": settings.margin,
    }
    if baseline is not None and Path(baseline).exists():
        metrics["baseline"] = evaluate_model(Path(baseline), split, reviewed)
    return metrics
