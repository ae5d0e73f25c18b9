"""bot/retraining/evalset.py: the figures `make test` prints for the independent set, on rows whose
answers are known."""
from __future__ import annotations

import pytest

from bot.reference.routing import default_router
from bot.retraining.evalset import figures, predicted_label, report_lines

LABELS = ["dog", "heating", "transport"]


def exp(intent, category=None, street=None, lead=None):
    return {"intent": intent, "category": category, "street_code": street, "confidence": 0.9,
            "route": {"lead": lead} if lead else None, "label": category or intent}


def test_predicted_label_is_the_category_then_the_intent_then_the_best_ranked() -> None:
    assert predicted_label({"category": "dog", "intent": "nlu_fallback"}) == "dog"
    assert predicted_label({"category": None, "intent": "consult"}) == "consult"
    parse = {"intent_ranking": [{"name": "nlu_fallback"}, {"name": "ask_status"}, {"name": "consult"}]}
    assert predicted_label({"category": None, "intent": "nlu_fallback"}, parse) == "ask_status"
    assert predicted_label({"category": None, "intent": "nlu_fallback"}) == "nlu_fallback"


def test_figures_per_register_emergency_and_routing() -> None:
    rows = [
        {"text": "a", "intent": "dog", "register": "chat", "street_code": "150102001"},
        {"text": "b", "intent": "heating", "register": "chat"},
        {"text": "c", "intent": "emergency", "register": "call"},
        {"text": "d", "intent": "emergency", "register": "call"},
        {"text": "e", "intent": "transport", "register": "title", "street_code": "150102001"},
    ]
    explained = [
        exp("dog", "dog", "150102001", "police_dog"),  # right, routed right
        exp("emergency"),  # a heating complaint answered as an emergency
        exp("emergency"),  # caught
        exp("other", "other"),  # missed
        exp("transport", "transport", "150102002", "transport_bureau"),  # right category, wrong street
    ]
    f = figures(rows, explained, LABELS, default_router())
    assert f["all"]["n"] == 5 and f["all"]["accuracy"] == pytest.approx(3 / 5)
    assert f["chat"]["accuracy"] == 0.5 and f["call"]["accuracy"] == 0.5 and f["title"]["accuracy"] == 1.0
    assert f["emergency"] == {"n": 2, "said": 2, "tp": 1, "recall": 0.5, "precision": 0.5, "false_alarms_on_complaints": 1}
    assert f["routing"] == {"n": 2, "ok": 1, "accuracy": 0.5}
    assert dict(f["confusions"]) == {("heating", "emergency"): 1, ("emergency", "other"): 1}
    text = "\n".join(report_lines("x", f))
    assert "emergency recall 0.5000 (1/2), precision 0.5000 (1/2); complaints answered as emergencies: 1" in text
    assert "routing (lead unit + street) on located complaints 0.5000 (1/2)" in text
    assert "heating→emergency×1" in text
