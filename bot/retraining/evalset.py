"""Figures on a labelled message set written apart from the training data (the independent
set in tests/data/independent/, the dev set in tests/data/dev/): accuracy and macro-F1
overall and per register, emergency recall/precision, routing on located messages.

Rows: {"text", "intent", "register"?, "street_code"?}. `intent` is the code a 12345
dispatcher would pick (a category code or consult/emergency/...). The predicted label is
the assistant's own reading (bot.nlu.explain): the category it acts on, else the intent; when
the fallback fired on a non-category, the best-ranked intent. An emergency counts as
predicted only when the intent itself is `emergency` (only then is the emergency reply sent).

    python -m bot.retraining.evalset FILE [FILE...]   (uses the latest model in models/)
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.retraining.metrics import label_scores

EMERGENCY = "emergency"
FALLBACK = "nlu_fallback"


def load_rows(*paths: Path) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


def predicted_label(explained: Mapping[str, Any], parse: Mapping[str, Any] | None = None) -> str:
    if explained.get("category"):
        return explained["category"]
    intent = explained.get("intent") or FALLBACK
    if intent == FALLBACK and parse:
        for r in parse.get("intent_ranking") or []:
            if r.get("name") != FALLBACK:
                return r["name"]
    return intent


def figures(rows: Sequence[Mapping[str, Any]], explained: Sequence[Mapping[str, Any]],
            labels: Sequence[str], router=None) -> dict[str, Any]:
    """rows[i] was read as explained[i] (bot.nlu.explain output plus "label")."""
    truth = [r["intent"] for r in rows]
    pred = [e["label"] for e in explained]
    out: dict[str, Any] = {"all": label_scores(truth, pred)}
    for reg in sorted({r.get("register") or "-" for r in rows}):
        idx = [i for i, r in enumerate(rows) if (r.get("register") or "-") == reg]
        out[reg] = label_scores([truth[i] for i in idx], [pred[i] for i in idx])
    said_emergency = [e.get("intent") == EMERGENCY for e in explained]
    is_emergency = [t == EMERGENCY for t in truth]
    tp = sum(a and b for a, b in zip(said_emergency, is_emergency))
    out["emergency"] = {
        "n": sum(is_emergency), "said": sum(said_emergency), "tp": tp,
        "recall": tp / sum(is_emergency) if any(is_emergency) else None,
        "precision": tp / sum(said_emergency) if any(said_emergency) else None,
        "false_alarms_on_complaints": sum(s and t in labels for s, t in zip(said_emergency, truth)),
    }
    out["confusions"] = Counter((t, p) for t, p in zip(truth, pred) if t != p).most_common()
    located = [(r, e) for r, e in zip(rows, explained) if r.get("street_code") and r["intent"] in labels]
    if located and router is not None:
        ok = 0
        for r, e in located:
            lead = router.catalogue.categories[r["intent"]].lead
            ok += bool(e.get("route") and e["route"]["lead"] == lead and e.get("street_code") == r["street_code"])
        out["routing"] = {"n": len(located), "ok": ok, "accuracy": ok / len(located)}
    else:
        out["routing"] = {"n": 0, "ok": 0, "accuracy": None}
    return out


def explain_rows(parser, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    from bot.nlu.explain import explain

    out = []
    for r in rows:
        parse = parser.parse(r["text"])
        e = explain(parse)
        e["label"] = predicted_label(e, parse)
        out.append(e)
    return out


def report_lines(name: str, figs: Mapping[str, Any], top_confusions: int = 12) -> list[str]:
    a = figs["all"]
    lines = [f"[{name}] {a['n']} messages: accuracy {a['accuracy']:.4f}, macro-F1 {a['macro_f1']:.4f}"]
    for reg, s in figs.items():
        if reg in ("all", "emergency", "confusions", "routing") or not isinstance(s, dict):
            continue
        lines.append(f"[{name}]   {reg:8s} n={s['n']:4d} accuracy {s['accuracy']:.4f} macro-F1 {s['macro_f1']:.4f}")
    em = figs["emergency"]
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    lines.append(f"[{name}] emergency recall {fmt(em['recall'])} ({em['tp']}/{em['n']}), precision {fmt(em['precision'])} "
                 f"({em['tp']}/{em['said']}); complaints answered as emergencies: {em['false_alarms_on_complaints']}")
    ro = figs["routing"]
    lines.append(f"[{name}] routing (lead unit + street) on located complaints {fmt(ro['accuracy'])} ({ro['ok']}/{ro['n']})")
    worst = sorted(((lab, s) for lab, s in a["per_label"].items() if s["support"]), key=lambda x: x[1]["f1"])[:6]
    lines.append(f"[{name}] lowest F1: " + ", ".join(f"{lab} {s['f1']:.2f}" for lab, s in worst))
    lines.append(f"[{name}] confusions (true→read ×n): "
                 + ", ".join(f"{t}→{p}×{n}" for (t, p), n in figs["confusions"][:top_confusions]))
    return lines


def main(argv: Sequence[str]) -> int:
    import logging

    from bot.domain.model import CATEGORIES
    from bot.nlu.explain import Parser
    from bot.reference.routing import default_router

    logging.getLogger().setLevel(logging.WARNING)
    try:  # no per-message debug lines from rasa's structlog
        from rasa.utils.log_utils import configure_structlog

        configure_structlog(logging.WARNING)
    except Exception:
        pass
    with Parser() as parser:
        explained = [(path, load_rows(Path(path))) for path in argv]
        explained = [(path, rows, explain_rows(parser, rows)) for path, rows in explained]
    for path, rows, exp in explained:
        figs = figures(rows, exp, list(CATEGORIES), default_router())
        print("\n".join(report_lines(Path(path).name, figs)))
        if "--misses" in sys.argv:  # for one's own dev data only: never read the independent set's texts
            for r, e in zip(rows, exp):
                if r["intent"] != e["label"] or (r["intent"] == EMERGENCY) != (e.get("intent") == EMERGENCY):
                    print(f"    {r['intent']} → {e['label']} ({e['intent']} {e['confidence']}) {r['text'][:60]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main([a for a in sys.argv[1:] if not a.startswith("-")]))
