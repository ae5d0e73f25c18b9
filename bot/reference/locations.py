"""Turning location mentions into one district/street/community, or a question.

Input: the entities our NLU extractor found (level + alias, or a code from a button),
output: a `Resolution` that the router and the complaint form act on. Never guesses:
a name shared by several units is `ambiguous` and the resident is asked to choose.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.reference.gazetteer import Gazetteer, Place

RESOLVED, AMBIGUOUS, UNRESOLVED, NONE = "resolved", "ambiguous", "unresolved", "none"
# the conversation's status of a location known only to its district (bot/conversation.py)
PARTIAL = "partial"
# the street the resident named and the street of the compound they named differ: ask
CONFLICT = "conflict"

_CODE_LEN = {"district": 6, "street": 9, "community": 12}
# a community's bare name that is also a road (车站西街社区 → 车站西街): a road crosses streets
_ROAD_NAME = re.compile(r"(?:路|街|大街|大道|巷)$")
_BUILDING = re.compile(r"\d+\s*(?:号楼|栋|幢)(?:\s*\d+\s*单元)?(?:\s*\d+\s*(?:号|室))?")


@dataclass(frozen=True)
class Mention:
    text: str
    level: str  # district | street | community | place
    value: str  # an alias of the gazetteer, or a statistical code (buttons send codes)
    start: int | None = None
    end: int | None = None

    @classmethod
    def from_entity(cls, ent: Mapping) -> Mention | None:
        level = ent.get("entity")
        if level not in ("district", "street", "community", "place"):
            return None
        value = str(ent.get("value") if ent.get("value") is not None else ent.get("text", ""))
        text = ent.get("text") or value
        if value.isdigit() and text == value:  # a button's code: show the name instead
            from bot.reference.gazetteer import default_gazetteer

            text = default_gazetteer().name_of(value) or value
        return cls(str(text), level, value, ent.get("start"), ent.get("end"))


@dataclass
class Resolution:
    status: str
    place: Place | None = None
    candidates: list[Place] = field(default_factory=list)
    mention_text: str = ""
    district_code: str | None = None
    street_code: str | None = None
    community_code: str | None = None

    @property
    def known_street(self) -> bool:
        return self.street_code is not None

    def as_json(self) -> dict:
        return {
            "status": self.status,
            "district_code": self.district_code,
            "street_code": self.street_code,
            "community_code": self.community_code,
            "candidates": [c.code for c in self.candidates],
        }


def _resolved(place: Place, text: str) -> Resolution:
    return Resolution(
        RESOLVED,
        place=place,
        mention_text=text,
        district_code=place.district_code,
        street_code=place.street_code,
        community_code=place.community_code,
    )


def _conflict(named_street: Place, inferred: Place, text: str) -> Resolution:
    """The resident named one street and a compound of another: never pick one for them.
    Candidates: the street they named, then the compound (community or mapped place)."""
    return Resolution(CONFLICT, candidates=[named_street, inferred], mention_text=text)


class LocationResolver:
    def __init__(self, gazetteer: Gazetteer):
        self.g = gazetteer

    def candidates(self, m: Mention) -> list[Place]:
        if m.value.isdigit() and len(m.value) == _CODE_LEN.get(m.level, -1):
            p = self.g.get(m.value)
            return [p] if p else []
        cands = self.g.candidates(m.value) or self.g.candidates(m.text)
        return [c for c in cands if c.level == m.level] or cands

    def resolve(self, mentions: Iterable[Mention]) -> Resolution:
        mentions = list(mentions)
        if not mentions:
            return Resolution(NONE)
        by_level = {lvl: [m for m in mentions if m.level == lvl] for lvl in ("district", "street", "community", "place")}
        districts = {c.code for m in by_level["district"] for c in self.candidates(m)}
        street_cands = [c for m in by_level["street"] for c in self.candidates(m)]
        if districts:
            street_cands = [s for s in street_cands if s.district_code in districts] or street_cands
        streets = {s.code for s in street_cands}

        # Most precise level first: community, then a mapped place, then street, then district.
        for m in by_level["community"]:
            cands = self.candidates(m)
            narrowed = cands
            if streets:
                narrowed = [c for c in narrowed if c.street_code in streets] or narrowed
            if districts:
                narrowed = [c for c in narrowed if c.district_code in districts] or narrowed
            if len(narrowed) == 1 and len(streets) == 1 and narrowed[0].street_code not in streets:
                if _ROAD_NAME.search(m.text):
                    continue  # "光明路街道…与车站西街交汇处": the road, not the community; the street decides
                return _conflict(street_cands[0], narrowed[0], m.text)
            if len(narrowed) == 1:
                return _resolved(narrowed[0], m.text)
            if len(narrowed) > 1:
                return Resolution(AMBIGUOUS, candidates=narrowed, mention_text=m.text)
        for m in by_level["place"]:
            cands = self.candidates(m)
            if len(cands) == 1 and cands[0].district_code:
                p = cands[0]
                if p.street_code and len(streets) == 1 and p.street_code not in streets:
                    return _conflict(street_cands[0], p, m.text)
                if p.street_code or not streets:
                    return _resolved(p, m.text)
        if len(streets) == 1:
            s = street_cands[0]
            return _resolved(s, by_level["street"][0].text)
        if len(streets) > 1:
            uniq = list({s.code: s for s in street_cands}.values())
            return Resolution(AMBIGUOUS, candidates=uniq, mention_text=by_level["street"][0].text)
        if len(districts) == 1:
            d = self.g.get(next(iter(districts)))
            res = _resolved(d, by_level["district"][0].text)
            return res
        texts = [m.text for m in mentions]
        return Resolution(UNRESOLVED, mention_text=" ".join(texts))

    def label(self, res: Resolution) -> str:
        """How the location reads in a summary: 新城区 海拉尔东路街道 公主府社区."""
        if res.status == RESOLVED and res.place is not None:
            if res.place.level == "place":
                return " ".join(x for x in (self.g.name_of(res.district_code), self.g.name_of(res.street_code), res.place.name) if x)
            return self.g.describe(res.place)
        return res.mention_text

    def choice_label(self, place: Place) -> str:
        return self.g.describe(place)


def building_text(text: str) -> str:
    """'3号楼2单元' style details that follow a place name."""
    return " ".join(m.group(0).replace(" ", "") for m in _BUILDING.finditer(text))


def mentions_from_entities(entities: Sequence[Mapping]) -> list[Mention]:
    out = []
    for e in entities or ():
        m = Mention.from_entity(e)
        if m is not None:
            out.append(m)
    return out
