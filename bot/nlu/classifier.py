"""Intent classifier: TF-IDF over character 1–4-grams and jieba word 1–2-grams of what
bot.nlu.reading makes of the message (names, numbers and courtesies out), and a
multinomial logistic regression.

On our held-out split this generalises better than DIET for short Chinese complaints,
trains in seconds on two cores and answers in well under a millisecond. The model is
stored as plain arrays and JSON (no pickle): a model archive cannot run code on load.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.reading import reading
from bot.nlu.tokenizer import LOCATION_SPANS


class _Features:
    """Two TF-IDF vectorisers (chars of the masked text, jieba words) side by side."""

    def __init__(self, char_range=(1, 4), word_range=(1, 2)):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.chars = TfidfVectorizer(analyzer="char", ngram_range=tuple(char_range), sublinear_tf=True, lowercase=False)
        self.words = TfidfVectorizer(analyzer=lambda ws: _ngrams(ws, tuple(word_range)), sublinear_tf=True, lowercase=False)
        self.word_range = tuple(word_range)
        self._fast: tuple | None = None  # per vectoriser: (analyser, vocabulary, idf, column offset)

    def fit_transform(self, texts: list[str], words: list[list[str]]):
        from scipy.sparse import hstack

        return hstack([self.chars.fit_transform(texts), self.words.fit_transform(words)]).tocsr()

    def transform(self, texts: list[str], words: list[list[str]]):
        from scipy.sparse import hstack

        return hstack([self.chars.transform(texts), self.words.transform(words)]).tocsr()

    def transform_one(self, text: str, words: list[str]):
        """(feature indices, values) of one message: the row `transform` gives, without
        scipy and without TfidfVectorizer's per-call checks (sklearn recomputes `idf_` from
        a sparse diagonal on every transform: ~1.5 ms of a ~2 ms parse)."""
        if self._fast is None:
            self._fast = tuple((vec.build_analyzer(), vec.vocabulary_, np.asarray(vec.idf_, dtype=np.float64), offset)
                               for vec, offset in ((self.chars, 0), (self.words, len(self.chars.vocabulary_))))
        indices: list[int] = []
        values: list[np.ndarray] = []
        for (analyse, vocab, idf, offset), doc in zip(self._fast, (text, words)):
            counts: dict[int, int] = {}
            for gram in analyse(doc):
                j = vocab.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                continue
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            v = (np.log(tf) + 1.0) * idf[idx]  # sublinear_tf, then idf, then l2 per vectoriser
            v /= np.sqrt(np.dot(v, v))
            indices.append(idx + offset)
            values.append(v)
        if not indices:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.concatenate(indices), np.concatenate(values)

    # plain-data persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "char_range": list(self.chars.ngram_range),
            "word_range": list(self.word_range),
            "char_vocab": {k: int(v) for k, v in self.chars.vocabulary_.items()},
            "word_vocab": {k: int(v) for k, v in self.words.vocabulary_.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], char_idf: np.ndarray, word_idf: np.ndarray) -> _Features:
        f = cls(d["char_range"], d["word_range"])
        for vec, vocab, idf in ((f.chars, d["char_vocab"], char_idf), (f.words, d["word_vocab"], word_idf)):
            vec.vocabulary_ = vocab
            vec.idf_ = idf
        return f


def _ngrams(words: Sequence[str], ngram_range) -> list[str]:
    lo, hi = ngram_range
    out = []
    for n in range(lo, hi + 1):
        out += [" ".join(words[i: i + n]) for i in range(len(words) - n + 1)]
    return out


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class CharNgramIntentClassifier(GraphComponent, IntentClassifier):
    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"char_ngram_range": [1, 4], "word_ngram_range": [1, 2], "C": 30.0, "max_iter": 3000, "class_weight": None,
                "ranking_length": 10}

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
                 features: _Features | None = None, coef: np.ndarray | None = None,
                 intercept: np.ndarray | None = None, classes: list[str] | None = None) -> None:
        self._config = config
        self._storage = model_storage
        self._resource = resource
        self.features, self.coef, self.intercept, self.classes = features, coef, intercept, classes
        self._coef_t: tuple | None = None  # (coef, its contiguous transpose)

    @classmethod
    def create(cls, config, model_storage, resource, execution_context: ExecutionContext) -> CharNgramIntentClassifier:
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        from sklearn.linear_model import LogisticRegression

        examples = [m for m in training_data.intent_examples if m.get(TEXT)]
        read = [reading(m.get(TEXT), m.get(LOCATION_SPANS)) for m in examples]
        texts = [r[0] for r in read]
        words = [r[1] for r in read]
        labels = [m.get(INTENT) for m in examples]
        self.features = _Features(self._config["char_ngram_range"], self._config["word_ngram_range"])
        x = self.features.fit_transform(texts, words)
        clf = LogisticRegression(C=self._config["C"], max_iter=self._config["max_iter"],
                                 class_weight=self._config["class_weight"])
        clf.fit(x, labels)
        self.coef, self.intercept, self.classes = clf.coef_, clf.intercept_, [str(c) for c in clf.classes_]
        self._persist()
        return self._resource

    def _persist(self) -> None:
        with self._storage.write_to(self._resource) as folder:
            folder = Path(folder)
            meta = {"classes": self.classes, **self.features.to_dict()}
            (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            np.savez(folder / "weights.npz", coef=self.coef, intercept=self.intercept,
                     char_idf=self.features.chars.idf_, word_idf=self.features.words.idf_)

    @classmethod
    def load(cls, config, model_storage, resource, execution_context, **kwargs: Any) -> CharNgramIntentClassifier:
        try:
            with model_storage.read_from(resource) as folder:
                folder = Path(folder)
                meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
                with np.load(folder / "weights.npz", allow_pickle=False) as w:
                    arrays = {k: w[k] for k in w.files}
        except ValueError:  # nothing trained (no intents)
            return cls(config, model_storage, resource)
        features = _Features.from_dict(meta, arrays["char_idf"], arrays["word_idf"])
        return cls(config, model_storage, resource, features, arrays["coef"], arrays["intercept"], meta["classes"])

    def predict_proba(self, messages: list[Message]) -> np.ndarray:
        if self._coef_t is None or self._coef_t[0] is not self.coef:
            # one row of weights per feature, contiguous: a message's score is a weighted sum of rows
            self._coef_t = (self.coef, np.ascontiguousarray(self.coef.T))
        weights = self._coef_t[1]
        scores = np.empty((len(messages), len(self.classes)))
        for i, m in enumerate(messages):
            idx, val = self.features.transform_one(*reading(m.get(TEXT), m.get(LOCATION_SPANS)))
            scores[i] = val @ weights[idx] + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(axis=1, keepdims=True)

    def process(self, messages: list[Message]) -> list[Message]:
        if self.coef is None:
            return messages
        todo = [m for m in messages if m.get(TEXT)]
        if not todo:
            return messages
        for message, probs in zip(todo, self.predict_proba(todo)):
            order = np.argsort(-probs)[: self._config["ranking_length"]]
            ranking = [{"name": self.classes[i], "confidence": float(probs[i])} for i in order]
            message.set(INTENT, ranking[0], add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        return messages
