"""Location extractor: a blank spaCy `zh` pipeline (jieba segmenter) with an EntityRuler
built from the gazetteer and the place mapping table, wrapped as a Rasa graph component.

Entities: {"entity": district|street|community|place, "value": <alias>, ...}. The alias
list is stored in the model, so a trained model extracts the same names wherever it runs;
`bot.reference.locations.LocationResolver` turns aliases into codes against the current data.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.tokenizer import LOCATION_SPANS
from bot.reference.dictionaries import PLACE_FREQ
from bot.reference.gazetteer import GAZETTEER_DIR, PLACES_CSV, Gazetteer
from bot.text import MAX_NLU_CHARS, normalise

logger = logging.getLogger(__name__)

# Compounds, roads and landmarks the gazetteer does not know: kept as free text (level
# "place", no code) so the ticket carries the address and a dispatcher can route it.
_PLACE_SUFFIX = (r"(?:小区|花园|家园|佳园|嘉园|公寓|大厦|广场|新村|市场|公园|商场|学校|小学|中学|医院|家属院|家属区|"
                 r"大院|大街|大道|路|街|巷)")
_UNKNOWN_PLACE = re.compile(
    r"([\u4e00-\u9fa5A-Za-z0-9]{2,10}?" + _PLACE_SUFFIX + r"(?:小区|[东西南北]区|[一二三四五六七八九]期)?)"
)
_LEADING_NOISE = re.compile(
    r"^(?:[和与跟及])?(?:.*?(?:我们|咱们|你们|他们|我家|我住|住在|就在|位于|地址|地点|家住|是在|在|到|从|去|的|了|是|这个|那个|这|那|这边|那边|附近|对面|旁边|门口|楼下|楼上|小区里|"
    # where, relative to something: 周边道路, 高于周边市场, 其他小区 name no place
    r"周边|周围|四周|一带|沿线|其他|其它|别的|所有|整个|各个|"
    # whose: 我小区, 本小区, 该路段 (only right before the kind word: 本溪路 stays a name)
    r"(?:[我咱本该此各](?=" + _PLACE_SUFFIX + r"$))))*"
)
# a letter's or a call's preamble (关于…的投诉, 投诉…, 市民来电反映…) and the anonymising 某 are
# never part of a place name: cut them and do not snap back over them
_PREAMBLE = re.compile(
    r"^(?:(?:市民|来电人?|群众|居民)?(?:来电)?(?:称|反映|反应|投诉|举报|咨询|求助|建议)[：:]?|关于|对于|有关|针对|"
    r"投诉|举报|反映|反应|请求|建议|要求|强烈|实名|某某|某)+"
)
_GENERIC = {"小区", "马路", "街道", "道路", "公路", "马路上", "这条路", "那条路", "我们小区", "本小区", "学校", "医院", "市场", "公园", "广场"}


def _gaps(text: str, taken: list[range]):
    pos = 0
    for r in sorted(taken, key=lambda r: r.start):
        if r.start > pos:
            yield pos, text[pos: r.start]
        pos = max(pos, r.stop)
    if pos < len(text):
        yield pos, text[pos:]


def unknown_places(text: str, taken: list[range], boundaries: set) -> list[dict[str, Any]]:
    """Place-like names in the stretches of text no gazetteer name covers, snapped to
    token boundaries (so 路灯 never yields a road and 和平小区 keeps its 和)."""
    out = []
    for offset, gap in _gaps(text, taken):
        out.extend(_unknown_places_in(gap, offset, boundaries))
    return out


def _unknown_places_in(text: str, offset: int, boundaries: set) -> list[dict[str, Any]]:
    out = []
    for m in _UNKNOWN_PLACE.finditer(text):
        start, end = m.span(1)
        if end + offset not in boundaries:
            continue
        cut = _LEADING_NOISE.match(m.group(1))
        if cut:
            start += cut.end()
        while start > 0 and start + offset not in boundaries:
            start -= 1
        pre = _PREAMBLE.match(text[start:end])
        if pre and pre.end():
            start += pre.end()  # may split a jieba token (关于某 | 小区): the place starts here
        name = text[start:end]
        if len(name) < 3 or name in _GENERIC or re.fullmatch(r"[\d号楼栋单元]+" + _PLACE_SUFFIX, name):
            continue
        out.append({"entity": "place", "value": name, "start": start + offset, "end": end + offset})
    return out


def build_aliases(gazetteer: Gazetteer) -> dict[str, str]:
    """alias → level (a name shared by levels was already narrowed to the higher one)."""
    return {alias: cands[0].level for alias, cands in sorted(gazetteer.aliases.items()) if cands}


class LocationMatcher:
    """spaCy blank zh + jieba + EntityRuler over the alias list. Usable without Rasa."""

    def __init__(self, aliases: dict[str, str]):
        import spacy

        from bot.reference.dictionaries import load_into_jieba

        load_into_jieba()  # domain words too: 路灯 must not become the end of a road name
        self.aliases: dict[str, str] = {}
        self.nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
        self._ruler = self.nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "ORTH", "validate": False})
        self.add(aliases)

    def add(self, aliases: dict[str, str]) -> None:
        """More names (a place an admin added while the server runs): jieba words + patterns."""
        import jieba

        new = {a: lvl for a, lvl in aliases.items() if a not in self.aliases}
        for alias in new:
            # one token per name, in or out of context. Names gazetteer.txt already loaded
            # are not added again: jieba.add_word adds to the dictionary total each time, and
            # an inflated total flips splits (路灯不亮 → 路/灯不亮, a road ending in 路).
            if jieba.dt.FREQ.get(alias, 0) < PLACE_FREQ:
                jieba.add_word(alias, PLACE_FREQ, "ns")
        self.aliases.update(new)
        patterns = [{"label": level, "pattern": alias, "id": alias} for alias, level in new.items()]
        if patterns:
            with self.nlp.select_pipes(enable=[]):
                self._ruler.add_patterns(patterns)

    def extract(self, text: str) -> list[dict[str, Any]]:
        clean = normalise(text or "")[:MAX_NLU_CHARS]
        if not clean.strip():
            return []
        doc = self.nlp(clean)
        ents = [
            {"entity": e.label_, "value": e.ent_id_ or e.text, "start": e.start_char, "end": e.end_char}
            for e in doc.ents
        ]
        boundaries = {t.idx for t in doc} | {len(clean)}
        ents += unknown_places(clean, [range(e["start"], e["end"]) for e in ents], boundaries)
        for e in ents:
            e["text"] = (text or "")[e["start"]: e["end"]]
            e["confidence_entity"] = 1.0
        return sorted(ents, key=lambda e: e["start"])


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=True)
class GazetteerEntityExtractor(GraphComponent, EntityExtractorMixin):
    ALIASES_FILE = "aliases.json"

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"gazetteer_dir": str(GAZETTEER_DIR), "places_csv": str(PLACES_CSV)}

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
                 aliases: dict[str, str] | None = None) -> None:
        self._config = config
        self._storage = model_storage
        self._resource = resource
        self._matcher = LocationMatcher(aliases) if aliases else None
        self._live = None  # the place table last merged in (bot.reference.gazetteer.default_gazetteer)

    @classmethod
    def create(cls, config, model_storage, resource, execution_context: ExecutionContext) -> GazetteerEntityExtractor:
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        g = Gazetteer.load(Path(self._config["gazetteer_dir"]), Path(self._config["places_csv"]))
        aliases = build_aliases(g)
        with self._storage.write_to(self._resource) as folder:
            (Path(folder) / self.ALIASES_FILE).write_text(json.dumps(aliases, ensure_ascii=False), encoding="utf-8")
        self._matcher = LocationMatcher(aliases)
        return self._resource

    @classmethod
    def load(cls, config, model_storage, resource, execution_context, **kwargs: Any) -> GazetteerEntityExtractor:
        with model_storage.read_from(resource) as folder:
            aliases = json.loads((Path(folder) / cls.ALIASES_FILE).read_text(encoding="utf-8"))
        loaded = cls(config, model_storage, resource, aliases)
        loaded._merge_live_places()
        return loaded

    def _merge_live_places(self) -> None:
        """The served model knows the names of its training data; an admin adds places to
        the running table (console → QC_TRAIN_DATA_DIR or data/). Names added since are
        merged in when the table changes (the same reloading accessor the action server
        uses), so a new place is extracted without retraining or restarting."""
        from bot.reference.gazetteer import default_gazetteer

        try:
            live = default_gazetteer()
        except Exception as exc:  # noqa: BLE001 - a broken table must not stop parsing
            logger.warning("place table not reloaded: %s", exc)
            return
        if live is self._live or self._matcher is None:
            return
        self._matcher.add(build_aliases(live))
        self._live = live

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        # Only mark where places are (for the tokenizer's mask); annotated entities stay.
        if self._matcher is not None:
            for message in training_data.training_examples:
                if message.get(TEXT):
                    found = self._matcher.extract(message.get(TEXT))
                    message.set(LOCATION_SPANS, [(e["start"], e["end"]) for e in found])
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        if self._matcher is None:
            return messages
        self._merge_live_places()
        for message in messages:
            found = self.add_extractor_name(self._matcher.extract(message.get(TEXT) or ""))
            message.set(LOCATION_SPANS, [(e["start"], e["end"]) for e in found])
            message.set(ENTITIES, message.get(ENTITIES, []) + found, add_to_output=True)
        return messages
