"""The four systems compared, each turning texts into (intent, category) predictions.

  ours     the project's pipeline (config.yml), a trained Rasa model
  stock    Rasa's stock Chinese pipeline (bench/configs/stock_zh.yml), a trained Rasa model
  tfidf    TF-IDF of character 1–3-grams + LogisticRegression (scikit-learn) on the raw text
  keywords the `keywords` of data/routing/catalogue.yml: most hits wins, tie or none → other
"""
from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import NONE, category_label
from bot.domain.model import CATEGORIES

OURS, STOCK, TFIDF, KEYWORDS = "ours", "stock", "tfidf", "keywords"
SYSTEMS = (OURS, STOCK, TFIDF, KEYWORDS)
LABELS = {
    OURS: "ours (config.yml)",
    STOCK: "stock Rasa zh (Jieba + DIET)",
    TFIDF: "TF-IDF char 1-3 + LR",
    KEYWORDS: "catalogue keywords",
}
# the systems that are served by a real Rasa server in the speed part
SERVED = (OURS, STOCK)


@dataclass
class Prediction:
    intent: str | None
    category: str  # one of the 12 codes or "none"
    parse: dict[str, Any] | None = field(default=None, repr=False)


class RasaModel:
    """A trained Rasa model loaded in this process (bot.nlu.explain.Parser: Agent.load + parse)."""

    def __init__(self, system: str, model: Path):
        from bot.nlu.explain import Parser

        self.system = system
        self.model = model
        t0 = time.perf_counter()
        self.parser = Parser(model)
        self.load_seconds = time.perf_counter() - t0

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        from bot.nlu.explain import category_of

        out = []
        for t in texts:
            parse = self.parser.parse(t)
            intent = (parse.get("intent") or {}).get("name")
            if self.system == OURS:
                # the assistant's own semantics (bot.nlu.explain.category_of): when the fallback
                # fired, the best-ranked category is what the resident is offered first
                cat = category_of(parse)
                if intent == "nlu_fallback" and cat:
                    intent = cat
                out.append(Prediction(intent, cat or NONE, parse))
            else:
                out.append(Prediction(intent, category_label(intent), parse))
        return out

    def close(self) -> None:
        try:
            self.parser.close()
        except Exception:
            pass
        self.parser = None
        gc.collect()


class TfidfLR:
    """Peer 2: the classic scikit-learn baseline, library defaults except max_iter."""

    def __init__(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.pipe = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3)),
                                  LogisticRegression(max_iter=2000))
        self.fit_seconds = 0.0

    def fit(self, texts: Sequence[str], intents: Sequence[str]) -> TfidfLR:
        t0 = time.perf_counter()
        self.pipe.fit(list(texts), list(intents))
        self.fit_seconds = time.perf_counter() - t0
        return self

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [Prediction(str(y), category_label(str(y))) for y in self.pipe.predict(list(texts))]


class KeywordRules:
    """Peer 3: the routing catalogue's keywords. Counts every occurrence of every keyword of
    each category; the category with most hits wins; a tie or no hit → "other". It has no
    notion of greetings, status questions or emergencies, so those always come out wrong."""

    def __init__(self, catalogue=None):
        from bot.reference.routing import RoutingCatalogue

        cat = catalogue or RoutingCatalogue.load()
        self.keywords = {code: tuple(rule.keywords) for code, rule in cat.categories.items()}

    def classify(self, text: str) -> str:
        hits = {code: sum(text.count(k) for k in kws) for code, kws in self.keywords.items() if kws}
        best = max(hits.values(), default=0)
        winners = [c for c, h in hits.items() if h == best]
        if best == 0 or len(winners) != 1:
            return "other"
        return winners[0]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for t in texts:
            c = self.classify(t)
            assert c in CATEGORIES
            out.append(Prediction(c, c))
        return out
