"""Human names for queue codes, streets and categories (what the console shows)."""

from __future__ import annotations

from functools import lru_cache

from bot.domain.model import CATEGORIES, DISPATCH_CENTER
from bot.reference.gazetteer import default_gazetteer
from bot.reference.routing import default_catalogue, street_queue

STREET_PREFIX = "street:"


def queue_label(code: str) -> str:
    if code.startswith(STREET_PREFIX):
        street = code[len(STREET_PREFIX) :]
        g = default_gazetteer()
        place = g.get(street)
        if place is None:
            return code
        district = g.name_of(place.district_code)
        return f"{district} {place.name}".strip()
    return default_catalogue().departments.get(code, code)


def street_label(code: str | None) -> str:
    return queue_label(street_queue(code)) if code else ""


# How a report came in (ticket_reports.channel), as the console shows it.
CHANNEL_LABELS = {"phone": "电话", "wechat": "微信", "socketio": "网页", "rest": "网页接口", "open311": "Open311"}


def channel_label(code: str | None) -> str:
    return CHANNEL_LABELS.get(code or "", code or "")


def category_label(code: str) -> str:
    return CATEGORIES.get(code, code)


@lru_cache(maxsize=1)
def department_choices() -> tuple[tuple[str, str], ...]:
    """Departments a ticket may be dispatched to (not the dispatch centre itself)."""
    return tuple((code, name) for code, name in default_catalogue().departments.items() if code != DISPATCH_CENTER)


@lru_cache(maxsize=1)
def street_choices() -> tuple[tuple[str, str], ...]:
    """Every street office, grouped by district order: (street code, '新城区 海拉尔东路街道')."""
    g = default_gazetteer()
    streets = [p for p in g.places.values() if p.level == "street"]
    streets.sort(key=lambda p: p.code)
    return tuple((p.code, f"{g.name_of(p.district_code)} {p.name}") for p in streets)


def is_known_queue(code: str) -> bool:
    if code.startswith(STREET_PREFIX):
        place = default_gazetteer().get(code[len(STREET_PREFIX) :])
        return place is not None and place.level == "street"
    return code in default_catalogue().departments
