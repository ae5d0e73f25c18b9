"""The classifier scores one message without scipy (bot.nlu.classifier._Features.transform_one):
the row and the probabilities must be sklearn's, for fitted and for reloaded features."""
from __future__ import annotations

import numpy as np
import pytest
from rasa.shared.nlu.training_data.message import Message
from sklearn.linear_model import LogisticRegression

from bot.nlu.classifier import CharNgramIntentClassifier, _Features

TRAIN = [
    ("楼下有人遛狗不牵绳", "dog"), ("小区里狗狗不拴绳 吓到孩子", "dog"), ("大型犬没牵绳乱跑", "dog"),
    ("单元门贴满小广告", "illegal_ads"), ("楼道里小广告撕了又贴", "illegal_ads"), ("电线杆上都是牛皮癣广告", "illegal_ads"),
    ("下水道堵了污水漫到路上", "drainage"), ("雨水井堵塞 路面积水", "drainage"), ("污水井冒水 臭气熏天", "drainage"),
]
PROBES = [
    "楼下有人遛狗不牵绳",
    "狗狗狗狗 狗 不牵绳不牵绳",       # repeated n-grams: tf > 1, sublinear
    "下水道  堵了\t\n 污水",           # whitespace runs, as sklearn's char analyser folds them
    "完全没见过的句子ABC",              # a few known characters only
    "zzz",                              # nothing in the vocabulary
    "",
]


def words(text: str):
    return [w for w in text.replace("\t", " ").split(" ") if w]


def fitted():
    f = _Features((1, 4), (1, 2))
    x = f.fit_transform([t for t, _ in TRAIN], [words(t) for t, _ in TRAIN])
    clf = LogisticRegression(C=30.0, max_iter=3000).fit(x, [c for _, c in TRAIN])
    return f, clf


def reloaded(f: _Features) -> _Features:
    return _Features.from_dict(f.to_dict(), f.chars.idf_, f.words.idf_)


@pytest.mark.parametrize("reload", [False, True])
@pytest.mark.parametrize("text", PROBES)
def test_one_message_row_equals_sklearn_transform(text: str, reload: bool) -> None:
    f, _ = fitted()
    if reload:
        f = reloaded(f)
    want = f.transform([text], [words(text)])
    idx, val = f.transform_one(text, words(text))
    order = np.argsort(idx)
    assert idx[order].tolist() == want.indices[np.argsort(want.indices)].tolist()
    np.testing.assert_allclose(val[order], want.data[np.argsort(want.indices)], rtol=1e-12, atol=1e-15)


def test_probabilities_equal_sklearn_logistic_regression() -> None:
    f, clf = fitted()
    c = CharNgramIntentClassifier(CharNgramIntentClassifier.get_default_config(), None, None,
                                  reloaded(f), clf.coef_, clf.intercept_, [str(k) for k in clf.classes_])
    from rasa.nlu.constants import TOKENS_NAMES
    from rasa.nlu.tokenizers.tokenizer import Token
    from rasa.shared.nlu.constants import TEXT

    from bot.nlu.tokenizer import LOCATION_SPANS  # noqa: F401  (no spans: nothing masked)

    messages = []
    for t in PROBES:
        m = Message({TEXT: t})
        m.set(TOKENS_NAMES[TEXT], [Token(w, 0) for w in words(t)])
        messages.append(m)
    from bot.nlu.reading import reading

    read = [reading(t) for t in PROBES]  # what the classifier reads (its own jieba words)
    want = clf.predict_proba(f.transform([r[0] for r in read], [r[1] for r in read]))
    np.testing.assert_allclose(c.predict_proba(messages), want, rtol=1e-9, atol=1e-12)
    assert [c.classes[i] for i in c.predict_proba(messages[:1]).argmax(axis=1)] == ["dog"]
