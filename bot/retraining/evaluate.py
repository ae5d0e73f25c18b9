"""Candidate against the active model: the held-out split (tests/data/test_split.jsonl,
never trained on) and the reviewed inbox examples. Per-intent precision/recall/F1 and a
confusion-matrix picture, both from bot.retraining.metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from bot.retraining.metrics import draw_confusion, label_scores

Example = tuple[str, str]  # (text, true label)


def split_examples(path: Path) -> list[Example]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    # complaints are scored by category, everything else by intent (as the accuracy test does)
    return [(r["text"], r.get("category") or r["intent"]) for r in rows]


def predicted_label(parse: dict[str, Any]) -> str:
    """What the model thinks, fallback or not: its best-ranked intent."""
    for r in parse.get("intent_ranking") or []:
        if r.get("name") and r["name"] != "nlu_fallback":
            return r["name"]
    return (parse.get("intent") or {}).get("name") or "(none)"


def scores(truth: Sequence[str], pred: Sequence[str]) -> dict[str, Any]:
    """bot.retraining.metrics.label_scores over the true labels, rounded, rows under "per_intent"."""
    s = label_scores(truth, pred)
    if not s["n"]:
        return {"n": 0, "accuracy": None, "macro_f1": None, "per_intent": {}}
    return {
        "n": s["n"],
        "accuracy": round(s["accuracy"], 4),
        "macro_f1": round(s["macro_f1"], 4),
        "per_intent": {lab: {"p": round(v["p"], 3), "r": round(v["r"], 3), "f1": round(v["f1"], 3),
                             "support": v["support"]} for lab, v in s["per_label"].items()},
    }


def evaluate_model(archive: Path, split: Sequence[Example], reviewed: Sequence[Example],
                   picture: Path | None = None, title: str = "") -> dict[str, Any]:
    from bot.nlu.explain import Parser

    with Parser(Path(archive)) as parser:
        split_pred = [predicted_label(parser.parse(t)) for t, _ in split]
        reviewed_pred = [predicted_label(parser.parse(t)) for t, _ in reviewed]
    out = {
        "model": str(archive),
        "split": scores([y for _, y in split], split_pred),
        "reviewed": scores([y for _, y in reviewed], reviewed_pred),
    }
    if picture is not None and split:
        draw_confusion([y for _, y in split], split_pred, picture, title)
        out["confusion_png"] = str(picture)
    return out


def compare(engine: Engine, candidate: Path, baseline: Path | None, settings: Any, work: Path) -> dict[str, Any]:
    from bot.retraining.inbox import accepted_examples

    split = split_examples(settings.test_split)
    with engine.connect() as conn:
        reviewed = [(e["text"], e["intent"]) for e in accepted_examples(conn)]
    metrics: dict[str, Any] = {
        "candidate": evaluate_model(candidate, split, reviewed, work / "confusion.png", "candidate (held-out split)"),
        "baseline": None,
        "margin": settings.margin,
    }
    if baseline is not None and Path(baseline).exists():
        metrics["baseline"] = evaluate_model(Path(baseline), split, reviewed)
    return metrics
