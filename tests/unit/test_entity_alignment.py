"""Every annotated entity in data/nlu must start and end on a token boundary of the
project's tokenizer (jieba with data/dictionaries, on normalised text). A span that cuts
a token (武川 inside the token 武川县) cannot be learnt or checked, and Rasa only warns.

The dictionary of place names, data/dictionaries/gazetteer.txt, is generated from the
gazetteer; it must be exactly what the generator writes (`python -m bot dict`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.nlu.tokenizer import jieba_tokens
from bot.paths import REPO_ROOT
from bot.reference.dictionaries import GAZETTEER_DICT, gazetteer_dictionary_lines, load_into_jieba
from bot.reference.gazetteer import Gazetteer

NLU_DIR = REPO_ROOT / "data" / "nlu"


@pytest.fixture(scope="module")
def nlu_examples():
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(NLU_DIR))
    return data.training_examples


def misaligned_entities(examples) -> list:
    load_into_jieba()
    problems = []
    for message in examples:
        entities = message.get("entities") or []
        if not entities:
            continue
        text = message.get("text")
        toks = jieba_tokens(text)
        starts, ends = {t.start for t in toks}, {t.end for t in toks}
        for e in entities:
            if e["start"] not in starts or e["end"] not in ends:
                around = " | ".join(t.text for t in toks if t.end > e["start"] and t.start < e["end"])
                problems.append(
                    f"{text!r}: {e['entity']} [{e['start']}:{e['end']}] {text[e['start']:e['end']]!r} "
                    f"(intent {message.get('intent')}; tokens there: {around})"
                )
    return problems


def test_nlu_data_has_annotated_entities(nlu_examples) -> None:
    annotated = [m for m in nlu_examples if m.get("entities")]
    assert len(nlu_examples) > 1000
    assert len(annotated) > 300
    levels = {e["entity"] for m in annotated for e in m.get("entities")}
    assert {"district", "street", "community", "place"} <= levels


def test_every_entity_annotation_is_aligned_with_tokens(nlu_examples) -> None:
    problems = misaligned_entities(nlu_examples)
    if problems:
        pytest.fail(
            f"{len(problems)} entity annotation(s) in data/nlu do not fall on token boundaries. Annotate the "
            "whole token (e.g. [武川县](district)), or add the name to data/locations/places.csv / "
            "data/dictionaries/domain.txt and regenerate the dictionary:\n" + "\n".join(problems),
            pytrace=False,
        )


def test_the_check_catches_a_span_inside_a_token() -> None:
    from rasa.shared.nlu.training_data.message import Message

    load_into_jieba()
    text = "武川县城的下水道一到夏天就臭"  # jieba: 武川县 | 城 | ...
    bad = Message(data={"text": text, "intent": "drainage",
                        "entities": [{"entity": "district", "value": "武川", "start": 0, "end": 2}]})
    good = Message(data={"text": text, "intent": "drainage",
                         "entities": [{"entity": "district", "value": "武川县", "start": 0, "end": 3}]})
    assert misaligned_entities([good]) == []
    [problem] = misaligned_entities([bad])
    assert problem.startswith(f"{text!r}: district [0:2] '武川'")


def test_gazetteer_dictionary_is_generated_not_edited() -> None:
    expected = "\n".join(gazetteer_dictionary_lines(Gazetteer.load())) + "\n"
    actual = Path(GAZETTEER_DICT).read_text(encoding="utf-8")
    if actual != expected:
        have, want = set(actual.splitlines()), set(expected.splitlines())
        pytest.fail(
            "data/dictionaries/gazetteer.txt is not what the gazetteer generates; run `python -m bot dict`.\n"
            f"missing: {sorted(want - have)[:20]}\nunexpected: {sorted(have - want)[:20]}"
        )
    assert actual.splitlines()[0].endswith(" 50000 ns")
