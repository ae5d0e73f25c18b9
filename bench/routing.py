"""Routing on the held-out split: of the complaints that name a location (street_code known,
not ambiguous), the share whose lead department (the catalogue's lead for the TRUE
category) and street are both right.

Ours: bot.nlu.explain.explain() of our parse (our classifier, our location extractor and
resolver, our router). The peers only classify, so they get our router applied to their
predicted category with OUR location resolution; the stock Rasa model also extracts
entities (DIET), so it is scored a second time with its own entities fed to our resolver.
"""
from __future__ import annotations

from collections.abc import Sequence

from bench.data import NONE, Example
from bench.systems import OURS, Prediction


def routed_examples(examples: Sequence[Example]) -> list[int]:
    return [i for i, e in enumerate(examples) if e.street_code and not e.ambiguous and e.category != NONE]


class RouteJudge:
    def __init__(self):
        from bot.reference.gazetteer import default_gazetteer
        from bot.reference.locations import LocationResolver
        from bot.reference.routing import default_router

        self.router = default_router()
        self.resolver = LocationResolver(default_gazetteer())

    def resolution(self, parse: dict):
        from bot.reference.locations import mentions_from_entities

        return self.resolver.resolve(mentions_from_entities(parse.get("entities") or []))

    def right(self, e: Example, lead: str | None, street: str | None) -> bool:
        return lead == self.router.catalogue.categories[e.category].lead and street == e.street_code

    def route_of(self, category: str, parse: dict, text: str):
        if category == NONE:
            return None, None
        r = self.router.route(category, self.resolution(parse), text)
        return r.lead, r.street_code


def routing_scores(examples: Sequence[Example], preds: dict[str, Sequence[Prediction]]) -> dict[str, dict]:
    """{system: {n, right, share}} plus "stock_own_entities" when the stock parses are there."""
    from bot.nlu.explain import explain

    judge = RouteJudge()
    idx = routed_examples(examples)
    ours = preds[OURS]
    out: dict[str, dict] = {}
    for system, ps in preds.items():
        right = 0
        for i in idx:
            e = examples[i]
            if system == OURS:
                route = explain(ours[i].parse).get("route") or {}
                lead, street = route.get("lead"), route.get("street_code")
            else:
                lead, street = judge.route_of(ps[i].category, ours[i].parse, e.text)
            right += judge.right(e, lead, street)
        out[system] = {"n": len(idx), "right": right, "share": right / len(idx) if idx else 0.0}
    stock = preds.get("stock")
    if stock and all(p.parse is not None for p in stock):
        right = 0
        for i in idx:
            lead, street = judge.route_of(stock[i].category, stock[i].parse, examples[i].text)
            right += judge.right(examples[i], lead, street)
        out["stock_own_entities"] = {"n": len(idx), "right": right, "share": right / len(idx) if idx else 0.0}
    return out
