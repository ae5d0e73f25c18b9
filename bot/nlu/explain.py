"""The routing explainer behind `python -m bot parse`: why a message goes where it goes."""
from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bot.domain.model import CATEGORIES
from bot.paths import REPO_ROOT
from bot.reference.gazetteer import default_gazetteer
from bot.reference.locations import LocationResolver, Resolution, mentions_from_entities
from bot.reference.routing import default_router

MODELS_DIR = REPO_ROOT / "models"
NON_INTENTS = {"nlu_fallback"}


def latest_model(models_dir: Path = MODELS_DIR) -> Path:
    models = sorted(models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise FileNotFoundError(f"no trained model in {models_dir}: run `make train` first")
    return models[-1]


def category_of(parse: dict[str, Any]) -> str | None:
    """The category the assistant acts on: the intent when it is a category; when the
    fallback fired because the model was unsure, the best-ranked category (the one the
    resident is offered first)."""
    intent = (parse.get("intent") or {}).get("name")
    if intent in CATEGORIES:
        return intent
    if intent in NON_INTENTS:
        for r in parse.get("intent_ranking") or []:
            name = r.get("name")
            if name in NON_INTENTS:
                continue
            return name if name in CATEGORIES else None
    return None


def explain(parse: dict[str, Any]) -> dict[str, Any]:
    g = default_gazetteer()
    resolver = LocationResolver(g)
    router = default_router()
    text = parse.get("text") or ""
    mentions = mentions_from_entities(parse.get("entities") or [])
    locations = []
    for m in mentions:
        cands = resolver.candidates(m)
        locations.append({
            "text": m.text,
            "level": m.level,
            "code": cands[0].code if len(cands) == 1 and not cands[0].code.startswith("place:") else None,
            **({"candidates": [c.code for c in cands]} if len(cands) > 1 else {}),
        })
    resolution: Resolution = resolver.resolve(mentions)
    category = category_of(parse)
    route = None
    if category:
        r = router.route(category, resolution, text)
        route = {
            "lead": r.lead,
            "lead_name": router.catalogue.unit_name(r.lead),
            "co": list(r.co),
            "street_code": r.street_code,
            "community_code": r.community_code,
            "district_code": r.district_code,
            "dispatch_class": r.dispatch_class.value,
            "reason": r.reason,
        }
    intent = parse.get("intent") or {}
    return {
        "text": text,
        "intent": intent.get("name"),
        "confidence": round(float(intent.get("confidence") or 0.0), 4),
        "category": category,
        "locations": locations,
        "location_status": resolution.status,
        # where the complaint is, whatever the category (null when not known for sure)
        "district_code": resolution.district_code,
        "street_code": resolution.street_code,
        "community_code": resolution.community_code,
        "route": route,
    }


class Parser:
    """Loads the trained model once; parses many texts."""

    def __init__(self, model: Path | None = None):
        os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
        from rasa.core.agent import Agent

        self.model_path = model or latest_model()
        self.agent = Agent.load(str(self.model_path))
        self._loop = asyncio.new_event_loop()

    def parse(self, text: str) -> dict[str, Any]:
        data = self._loop.run_until_complete(self.agent.parse_message(text))
        data["text"] = text
        return data

    def explain(self, text: str) -> dict[str, Any]:
        return explain(self.parse(text))

    def explain_many(self, texts: Iterable[str]) -> Iterator[dict[str, Any]]:
        for t in texts:
            yield self.explain(t)

    def close(self) -> None:
        """Closes the private event loop; the parser is unusable afterwards. A loop left
        open warns (ResourceWarning) whenever the garbage collector happens to find it."""
        self._loop.close()

    def __enter__(self) -> Parser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl_texts(lines: Iterable[str]) -> Iterator[str | None]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            yield None
            continue
        yield obj.get("text") if isinstance(obj, dict) and isinstance(obj.get("text"), str) else None
