"""Category + location → the units responsible (主办/协办/属地) and the dispatch class.

The rules live in data/routing/catalogue.yml; this module only reads and applies them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from bot.domain.limits import LimitsError, TimeLimits
from bot.domain.model import CATEGORIES, DispatchClass, Route
from bot.paths import DATA_DIR
from bot.reference.gazetteer import Gazetteer, default_gazetteer
from bot.reference.locations import PARTIAL, RESOLVED, Resolution

CATALOGUE_PATH = DATA_DIR / "routing" / "catalogue.yml"
DISPATCH_CENTER = "dispatch_center"


def street_queue(street_code: str) -> str:
    return f"street:{street_code}"


@dataclass(frozen=True)
class CategoryRule:
    code: str
    name: str
    lead: str
    co: Sequence[str]
    dispatch_class: DispatchClass
    keywords: Sequence[str] = ()
    escalate: dict[DispatchClass, Sequence[str]] = field(default_factory=dict)


class CatalogueError(ValueError):
    pass


@dataclass
class RoutingCatalogue:
    departments: dict[str, str]
    categories: dict[str, CategoryRule]
    urgent_keywords: Sequence[str]
    time_limits: TimeLimits | None = None

    @classmethod
    def load(cls, path: Path = CATALOGUE_PATH) -> RoutingCatalogue:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        departments = {str(k): str(v) for k, v in (raw.get("departments") or {}).items()}
        cats: dict[str, CategoryRule] = {}
        for code, spec in (raw.get("categories") or {}).items():
            if code not in CATEGORIES:
                raise CatalogueError(f"unknown category code {code!r} in {path}")
            units = [spec["lead"], *(spec.get("co") or [])]
            for unit in units:
                if unit not in departments:
                    raise CatalogueError(f"category {code}: unit {unit!r} is not in departments")
            escalate = {DispatchClass(k): tuple(v) for k, v in (spec.get("escalate") or {}).items()}
            cats[code] = CategoryRule(
                code=code,
                name=spec.get("name") or CATEGORIES[code],
                lead=spec["lead"],
                co=tuple(spec.get("co") or ()),
                dispatch_class=DispatchClass(spec.get("dispatch_class", "normal")),
                keywords=tuple(spec.get("keywords") or ()),
                escalate=escalate,
            )
        missing = set(CATEGORIES) - set(cats)
        if missing:
            raise CatalogueError(f"categories without a route: {sorted(missing)}")
        if DISPATCH_CENTER not in departments:
            raise CatalogueError("departments must include dispatch_center (派单中心)")
        try:
            limits = TimeLimits.parse(raw)
        except LimitsError as exc:
            raise CatalogueError(f"{path}: {exc}") from None
        missing_classes = {c.value for c in DispatchClass} - set(limits.classes)
        if missing_classes:
            raise CatalogueError(f"dispatch_classes without 签收/办结 limits: {sorted(missing_classes)}")
        return cls(departments, cats, tuple(raw.get("urgent_keywords") or ()), limits)

    def unit_name(self, unit: str, gazetteer: Gazetteer | None = None) -> str:
        if unit.startswith("street:"):
            g = gazetteer or default_gazetteer()
            return g.name_of(unit.split(":", 1)[1]) or unit
        return self.departments.get(unit, unit)

    def dispatch_class_for(self, category: str, text: str) -> (DispatchClass, str | None):
        """The class and the keyword that set it (None when it is the category default)."""
        rule = self.categories[category]
        for kw in self.urgent_keywords:
            if kw in text:
                return DispatchClass.URGENT, kw
        for cls_ in (DispatchClass.URGENT, DispatchClass.UTILITIES):
            for kw in rule.escalate.get(cls_, ()):
                if kw in text and _rank(cls_) < _rank(rule.dispatch_class):
                    return cls_, kw
        return rule.dispatch_class, None


def _rank(c: DispatchClass) -> int:
    return {DispatchClass.URGENT: 0, DispatchClass.UTILITIES: 1, DispatchClass.NORMAL: 2}[c]


class Router:
    def __init__(self, catalogue: RoutingCatalogue, gazetteer: Gazetteer):
        self.catalogue = catalogue
        self.g = gazetteer

    def route(self, category: str, location: Resolution, text: str = "") -> Route:
        rule = self.catalogue.categories[category]
        dclass, keyword = self.catalogue.dispatch_class_for(category, text or "")
        reasons: list[str] = [f"类别 {rule.name}"]
        street = location.street_code if location.status == RESOLVED else None
        # a location known only to its district (status partial) still names the district
        district = location.district_code if location.status in (RESOLVED, PARTIAL) else None
        community = location.community_code if location.status == RESOLVED else None
        if street:
            lead = rule.lead
            co = tuple(dict.fromkeys([*rule.co, street_queue(street)]))
            reasons.append(f"主办 {self.catalogue.unit_name(lead)}")
            reasons.append(f"属地 {self.g.name_of(street)}（{self.g.name_of(district)}）")
        else:
            lead = DISPATCH_CENTER
            co = ()
            where = {
                "ambiguous": f"地点“{location.mention_text}”有多个同名单位",
                "unresolved": f"地点“{location.mention_text}”未能对应到街道",
                "none": "未提供地点",
            }.get(location.status, "街道未确定")
            if district:
                where = f"仅知{self.g.name_of(district)}，街道未确定"
            reasons.append(f"{where}，转派单中心人工派单（建议主办 {self.catalogue.unit_name(rule.lead)}）")
        # the label says how the deadline runs (一般: working days, urgent classes: clock hours)
        reasons.append(f"时限 {dclass.label} {dclass.limits_label(category)}" + (f"（关键词“{keyword}”）" if keyword else ""))
        return Route(
            lead=lead,
            co=co,
            district_code=district,
            street_code=street,
            community_code=community,
            dispatch_class=dclass,
            reason="；".join(reasons),
        )


@lru_cache(maxsize=1)
def default_catalogue() -> RoutingCatalogue:
    return RoutingCatalogue.load()


_router: list[Router] = []


def default_router() -> Router:
    """One router, rebuilt when the place table was reloaded (bot.reference.gazetteer)."""
    cat, g = default_catalogue(), default_gazetteer()
    if not _router or _router[0].catalogue is not cat or _router[0].g is not g:
        _router[:] = [Router(cat, g)]
    return _router[0]
