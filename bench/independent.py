"""The four systems on the independent evaluation set (tests/data/independent/), per register.

`python -m bench.independent [--stock MODEL.tar.gz]` runs this part alone (a few minutes):
ours = the latest model in models/, the TF-IDF and keyword peers fitted here, the stock
peer only when a trained stock model is given (`make bench` trains one and passes its
predictions in). Figures: label accuracy and macro-F1 overall and per register, emergency
recall/precision (emergency = the intent itself), computed by bot.retraining.metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.systems import KEYWORDS, LABELS, OURS, STOCK, TFIDF, KeywordRules, Prediction, TfidfLR  # noqa: E402
from bot.paths import REPO_ROOT  # noqa: E402
from bot.retraining.metrics import label_scores  # noqa: E402

INDEPENDENT_DIR = REPO_ROOT / "tests" / "data" / "independent"
REGISTERS = ("chat", "call", "letter", "elderly", "title")


def load_independent(directory: Path = INDEPENDENT_DIR) -> list[dict]:
    rows = []
    for path in sorted(directory.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


def label_of(p: Prediction) -> str:
    """What the system answers: its category, else its intent."""
    return p.category if p.category not in (None, "none") else (p.intent or "(none)")


def scores(rows: Sequence[dict], preds: Sequence[Prediction]) -> dict:
    truth = [r["intent"] for r in rows]
    pred = [label_of(p) for p in preds]
    out = {"all": label_scores(truth, pred)}
    for reg in REGISTERS:
        idx = [i for i, r in enumerate(rows) if r.get("register") == reg]
        out[reg] = label_scores([truth[i] for i in idx], [pred[i] for i in idx])
    said = [p.intent == "emergency" for p in preds]
    real = [t == "emergency" for t in truth]
    tp = sum(a and b for a, b in zip(said, real))
    out["emergency"] = {"n": sum(real), "said": sum(said), "tp": tp,
                        "recall": tp / sum(real) if any(real) else None,
                        "precision": tp / sum(said) if any(said) else None}
    return out


def table(results: dict[str, dict]) -> str:
    f = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    head = ["system", "n", "accuracy", "macro-F1", *[f"{r} acc / F1" for r in REGISTERS], "emergency R / P"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, s in results.items():
        row = [LABELS.get(system, system), str(s["all"]["n"]), f(s["all"]["accuracy"]), f(s["all"]["macro_f1"])]
        row += [f"{f(s[r]['accuracy'])} / {f(s[r]['macro_f1'])}" for r in REGISTERS]
        row.append(f"{f(s['emergency']['recall'])} / {f(s['emergency']['precision'])}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def peer_predictions(texts: Sequence[str], train_texts: Sequence[str], train_intents: Sequence[str]) -> dict[str, list]:
    return {TFIDF: TfidfLR().fit(train_texts, train_intents).predict(texts), KEYWORDS: KeywordRules().predict(texts)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.independent")
    ap.add_argument("--stock", type=Path, help="a trained stock-peer model (bench/configs/stock_zh.yml)")
    ap.add_argument("--model", type=Path, help="our model (default: the latest in models/)")
    args = ap.parse_args(argv)
    from bench import data
    from bench.systems import RasaModel
    from bench.worker import quiet_rasa
    from bot.nlu.explain import latest_model

    quiet_rasa()
    rows = load_independent()
    texts = [r["text"] for r in rows]
    train_ex = data.training_examples(data.load_training())
    preds: dict[str, list] = {}
    ours = RasaModel(OURS, args.model or latest_model())
    preds[OURS] = ours.predict(texts)
    ours.close()
    if args.stock:
        stock = RasaModel(STOCK, args.stock)
        preds[STOCK] = stock.predict(texts)
        stock.close()
    preds.update(peer_predictions(texts, [e.text for e in train_ex], [e.intent for e in train_ex]))
    print(table({s: scores(rows, p) for s, p in preds.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
