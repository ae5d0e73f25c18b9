"""A queue page's search and filters: the URL's parameters → a TicketSearch (validated, with
the refusals a user reads), and back to a query string for paging, tabs and the CSV export.

    number   ticket number, whole (QC-261124-0001) or part of one (261124, 0001)
    phone    last four digits of a reporter's phone (only for roles that may: access.may_see_phone)
    q        words of the description (jieba, bot/storage/search.py)
    category, place (street or community code), lead (lead unit), state,
    overdue=1, supervised=1 (督办), from / to (YYYY-MM-DD, Hohhot days, both included)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from bot.console.names import is_known_queue
from bot.console.repository import TicketSearch
from bot.console.services.access import ConsoleError, Principal, may_see_phone
from bot.domain.clock import SHANGHAI
from bot.domain.model import CATEGORIES, DISPATCH_CENTER, TicketState
from bot.domain.numbers import parse_ticket_number
from bot.storage.search import MAX_QUERY_CHARS, query_words
from bot.text import unstorable

PARAMS = ("number", "phone", "q", "category", "place", "lead", "state", "overdue", "supervised", "from", "to")
_PLACE = re.compile(r"\d{6,12}")
_NUMBER_JUNK = re.compile(r"[\s—–]+")


def _text(params: Mapping[str, str], name: str) -> str:
    return unicodedata.normalize("NFKC", str(params.get(name) or "")).strip()


def _day(params: Mapping[str, str], name: str) -> date | None:
    raw = _text(params, name)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 2999:  # the day after must exist too
        raise ConsoleError("日期格式应为 年-月-日，例如 2026-11-24。", 400)
    return day


def parse_search(params: Mapping[str, str], p: Principal, now: datetime, phone_roles: frozenset[str]) -> TicketSearch:
    """The search a URL asks for; ConsoleError (400, or 403 for a phone search this role may
    not make) with a message when it cannot be run as asked."""
    if any(unstorable(str(params.get(k) or "")) for k in PARAMS):  # NUL, lone surrogates: no database takes them
        raise ConsoleError("查询中有无法识别的字符。", 400)
    number = _text(params, "number")
    exact = parse_ticket_number(number) if number else None
    if len(number) > 20:
        raise ConsoleError("工单编号太长。", 400)
    phone = _text(params, "phone")
    if phone:
        if not may_see_phone(p.role, False, phone_roles):
            raise ConsoleError("您的角色无权按居民手机号查找工单。", 403)
        if not re.fullmatch(r"\d{4}", phone):
            raise ConsoleError("请输入居民手机号的后四位（4 位数字）。", 400)
    q = _text(params, "q")
    if len(q) > MAX_QUERY_CHARS:
        raise ConsoleError(f"描述关键词不能超过 {MAX_QUERY_CHARS} 个字。", 400)
    category = _text(params, "category")
    if category and category not in CATEGORIES:
        raise ConsoleError("没有这个类别。", 400)
    place = _text(params, "place")
    if place and not _PLACE.fullmatch(place):
        raise ConsoleError("街道或社区代码应为 6–12 位数字。", 400)
    lead = _text(params, "lead")
    if lead and lead != DISPATCH_CENTER and not is_known_queue(lead):
        raise ConsoleError("没有这个承办单位。", 400)
    state = _text(params, "state")
    if state and state not in {s.value for s in TicketState}:
        raise ConsoleError("没有这个状态。", 400)
    first, last = _day(params, "from"), _day(params, "to")
    if first and last and first > last:
        raise ConsoleError("开始日期晚于结束日期。", 400)
    return TicketSearch(
        number=exact or _NUMBER_JUNK.sub("-", number).upper(),
        exact_number=exact is not None,
        phone_last4=phone,
        phone_confidential=may_see_phone(p.role, True, phone_roles),
        text=bool(q),
        words=tuple(query_words(q)) if q else (),
        category=category,
        place=place,
        lead=lead,
        state=state,
        overdue_before=now if params.get("overdue") else None,
        supervised=bool(params.get("supervised")),
        created_from=datetime.combine(first, time(0), SHANGHAI) if first else None,
        created_before=datetime.combine(last + timedelta(days=1), time(0), SHANGHAI) if last else None,
    )


def search_params(params: Mapping[str, str]) -> dict[str, str]:
    """The search's own parameters of a URL (what paging, tabs and the export carry on)."""
    return {k: str(params[k]) for k in PARAMS if params.get(k)}


def query_string(params: Mapping[str, str], **more: object) -> str:
    """'view=…&q=…&page=2': the search plus `more`, URL-encoded (shown escaped by Jinja2)."""
    return urlencode({**{k: str(v) for k, v in more.items() if v not in (None, "")}, **search_params(params)})
