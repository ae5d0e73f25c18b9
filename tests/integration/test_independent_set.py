"""The independent evaluation set (tests/data/independent/, written by people who never saw
data/nlu; see docs/measured.md) beside the held-out split: accuracy and macro-F1 per
register, emergency recall/precision, routing on located messages. The figures are printed on
every run; the floors below are what the model reaches today (the issue's targets are
printed beside them), so a change that makes the assistant read residents worse fails."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain.model import CATEGORIES
from bot.nlu.explain import Parser, latest_model
from bot.reference.routing import default_router
from bot.retraining.evalset import explain_rows, figures, load_rows, report_lines

DATA = Path(__file__).resolve().parents[1] / "data"
INDEPENDENT = sorted((DATA / "independent").glob("*.jsonl"))
SPLIT = DATA / "test_split.jsonl"
REGISTERS = {"chat", "call", "letter", "elderly", "title"}

# floors: what the model reaches now (targets of issue 15 in the comments)
FLOOR_ACCURACY = 0.94  # target 0.92 (round one 0.912, round two 0.918, round three 0.943)
FLOOR_MACRO_F1 = 0.935  # target 0.90 (0.940)
FLOOR_REGISTER_F1 = 0.93  # target 0.88 in every register (lowest: call 0.932)
FLOOR_EMERGENCY_RECALL = 0.99  # target 0.97 (63/63: one miss fails)
FLOOR_EMERGENCY_PRECISION = 0.98  # target 0.95 (63/64)
FLOOR_ROUTING = 0.96  # target 0.95 (117/121)
FLOOR_FALSE_ALARMS = 1  # target 0: complaints of the set answered with the emergency reply (one, elderly speech)
FLOOR_SPLIT_FALSE_ALARMS = 0  # target 0 (reached in round two)


@pytest.fixture(scope="module")
def parser() -> Iterator[Parser]:
    with Parser(latest_model()) as p:
        yield p


@pytest.fixture(scope="module")
def independent(parser):
    rows = load_rows(*INDEPENDENT)
    return rows, figures(rows, explain_rows(parser, rows), list(CATEGORIES), default_router())


@pytest.fixture(scope="module")
def split(parser):
    rows = load_rows(SPLIT)
    return rows, figures(rows, explain_rows(parser, rows), list(CATEGORIES), default_router())


def test_the_set_is_whole_and_labelled_with_known_codes() -> None:
    rows = load_rows(*INDEPENDENT)
    assert len(rows) >= 600
    known = set(CATEGORIES) | {"emergency", "consult", "ask_status", "praise", "human_handoff"}
    assert {r["intent"] for r in rows} <= known
    by_register = {reg: sum(r["register"] == reg for r in rows) for reg in REGISTERS}
    assert min(by_register.values()) >= 80, by_register


def test_the_set_is_never_trained_on() -> None:
    from rasa.shared.nlu.training_data.loading import load_data

    trained = {m.get("text") for m in load_data("data/nlu").training_examples}
    split_texts = {json.loads(line)["text"] for line in SPLIT.read_text(encoding="utf-8").splitlines() if line.strip()}
    texts = [r["text"] for r in load_rows(*INDEPENDENT)]
    assert [t for t in texts if t in trained and len(t) > 6] == []
    assert [t for t in texts if t in split_texts and len(t) > 6] == []


def test_figures_beside_the_split(independent, split, capsys) -> None:
    _, fi = independent
    _, fs = split
    with capsys.disabled():
        print()
        print("\n".join(report_lines("held-out split", fs, top_confusions=8)))
        print("\n".join(report_lines("independent set", fi)))
        print("[targets] independent: accuracy ≥ 0.92, macro-F1 ≥ 0.90 (≥ 0.88 per register), "
              "emergency recall ≥ 0.97 precision ≥ 0.95, routing ≥ 0.95; split ≥ 0.97")
    assert fi["all"]["accuracy"] >= FLOOR_ACCURACY
    assert fi["all"]["macro_f1"] >= FLOOR_MACRO_F1
    for reg in REGISTERS:
        assert fi[reg]["macro_f1"] >= FLOOR_REGISTER_F1, reg
    assert fi["emergency"]["recall"] >= FLOOR_EMERGENCY_RECALL
    assert fi["emergency"]["precision"] >= FLOOR_EMERGENCY_PRECISION
    assert fi["routing"]["accuracy"] >= FLOOR_ROUTING


def test_no_ordinary_complaint_gets_the_emergency_reply(independent, split) -> None:
    assert split[1]["emergency"]["false_alarms_on_complaints"] <= FLOOR_SPLIT_FALSE_ALARMS
    assert independent[1]["emergency"]["false_alarms_on_complaints"] <= FLOOR_FALSE_ALARMS


# the blind-written development set (tests/data/dev/blind_emergency.jsonl: 30% emergencies told in
# calm words, traps with alarming words); it may be read, so it guides but does not measure
DEV_BLIND = DATA / "dev" / "blind_emergency.jsonl"
FLOOR_DEV_EMERGENCY_RECALL = 0.99  # 107/108
FLOOR_DEV_FALSE_ALARMS = 0


def test_the_blind_dev_set_emergencies(parser, capsys) -> None:
    rows = load_rows(DEV_BLIND)
    figs = figures(rows, explain_rows(parser, rows), list(CATEGORIES), default_router())
    with capsys.disabled():
        print()
        print("\n".join(report_lines("blind dev set", figs, top_confusions=8)))
    assert figs["emergency"]["recall"] >= FLOOR_DEV_EMERGENCY_RECALL
    assert figs["emergency"]["false_alarms_on_complaints"] <= FLOOR_DEV_FALSE_ALARMS
