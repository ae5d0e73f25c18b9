"""Open311 GeoReport v2 (JSON) over the ticket store.

    GET  /open311/v2/services.json                 the categories (catalogue) as services
    POST /open311/v2/requests.json                 file a request (api_key required)
    GET  /open311/v2/requests.json                 requests (filters: service_request_id, service_code,
                                                   start_date, end_date, status); public, no personal data:
                                                   phone/ID numbers, names and house numbers masked
                                                   unless api_key's scope is 'personal'
    GET  /open311/v2/requests/{id}.json            one request

service_request_id is the ticket number (QC-YYMMDD-NNNN). States map to `open`
(受理 派单 签收 办理 退单) and `closed` (办结 回访). The location is resolved from
`address_string` with the gazetteer like a chat message; an unknown or ambiguous place
goes to the dispatch centre (派单中心). API keys are stored as sha256 hashes
(create one with `python -m bot console apikey NAME` or on the console's 账号 page).
media_url is only a photo URL an Open311 client posted itself, never a resident's chat photo
(see public_media_url; workers see those in the console).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot.console import auth
from bot.console.http import CONSOLE, read_form
from bot.console.names import category_label, queue_label
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.clock import SHANGHAI
from bot.domain.model import CATEGORIES, CLOSED_STATES, OPEN_STATES, ComplaintDraft, Ticket
from bot.security.ratelimit import MSG_TOO_FAST, RateLimiter
from bot.storage.tables import ticket_reports, tickets
from bot.text import clean_message, mask_personal_data, unstorable
from bot.uploads import own_photo_name

log = logging.getLogger(__name__)

PREFIX = "/open311/v2"
RATE_LIMIT_ENV = "QC_OPEN311_RATE_LIMIT"  # POSTs per API key per minute; default 30
LIMITER = web.AppKey("open311_limiter", RateLimiter)
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)
_PHONE = re.compile(r"^[0-9+\-\s()]{5,32}$")


def error_response(status: int, description: str) -> web.Response:
    return web.json_response([{"code": status, "description": description}], status=status,
                             dumps=_dumps)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """Errors under /open311/ in Open311's JSON format ([{code, description}]), as its
    clients expect: never an HTML page, never a stack trace."""
    if not request.path.startswith("/open311/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        return error_response(exc.status, exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - logged with its trace; the client gets a JSON 500
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(SHANGHAI).isoformat(timespec="seconds") if dt else None


class BadRequest(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


# --- services -------------------------------------------------------------------


async def services(request: web.Request) -> web.Response:
    from bot.reference.routing import default_catalogue

    cat = default_catalogue()
    return _json(
        [
            {
                "service_code": code,
                "service_name": name,
                "description": f"{name}（主办：{queue_label(cat.categories[code].lead)}）",
                "metadata": False,
                "type": "realtime",
                "keywords": ",".join(cat.categories[code].keywords),
                "group": "城市管理" if code != "other" else "其他",
            }
            for code, name in CATEGORIES.items()
        ]
    )


# --- POST requests --------------------------------------------------------------


def _route_for(category: str, address: str, description: str) -> Any:
    from bot.reference.gazetteer import default_gazetteer
    from bot.reference.locations import LocationResolver, Mention
    from bot.reference.routing import default_router

    g = default_gazetteer()
    mentions = []
    for start, end, alias in g.find(address):
        cands = g.candidates(alias)
        if cands:
            mentions.append(Mention(alias, cands[0].level, alias, start, end))
    resolution = LocationResolver(g).resolve(mentions)
    return default_router().route(category, resolution, f"{address} {description}")


def _coordinates(params: dict[str, str]) -> str | None:
    """'lat,long' as sent, when both are finite numbers on Earth; None when neither is sent."""
    lat, long = params.get("lat", "").strip(), params.get("long", "").strip()
    if not lat and not long:
        return None
    try:
        y, x = float(lat), float(long)
    except ValueError:
        y = x = math.nan
    if not (math.isfinite(y) and math.isfinite(x) and -90 <= y <= 90 and -180 <= x <= 180):
        raise BadRequest(400, "lat and long must be numbers on Earth (-90..90, -180..180)")
    return f"{lat},{long}"


def file_request(uow: ConsoleUnitOfWork, api_key: str, params: dict[str, str], idempotency: str | None, now: datetime) -> dict[str, Any]:
    from bot.services.tickets import IdempotencyConflict, file_complaint

    with uow:
        client = uow.console.api_key_name(auth.token_hash(api_key)) if api_key else None
    if client is None:
        raise BadRequest(403, "api_key missing or invalid")
    code = params.get("service_code", "").strip()
    if code not in CATEGORIES:
        raise BadRequest(400, "service_code missing or unknown (see services.json)")
    address = params.get("address_string", "").strip()
    point = _coordinates(params)
    if not address and point is None:
        raise BadRequest(400, "a location is required: address_string, or lat and long")
    description = params.get("description", "").strip()
    if not description:
        raise BadRequest(400, "description is required")
    if len(description) > 4000 or len(address) > 500:
        raise BadRequest(400, "description or address_string too long")
    phone = params.get("phone", "").strip() or None
    if phone and not _PHONE.match(phone):
        raise BadRequest(400, "phone is not a phone number")
    media = params.get("media_url", "").strip() or None
    if media and not re.match(r"^https?://", media):
        raise BadRequest(400, "media_url must be an http(s) URL")
    if media and "/widget/photo/" in media:  # a resident's upload is theirs, never a client's picture
        raise BadRequest(400, "media_url must be a picture the client publishes, not one of our uploads")
    who = (params.get("account_id") or params.get("device_id") or params.get("email") or "anonymous").strip()[:120]
    key = f"open311:{client}:{(idempotency or uuid.uuid4().hex)[:100]}"
    draft = ComplaintDraft(
        sender_id=f"open311:{client}:{who}",
        channel="open311",
        category=code,
        description=description,
        location_text=address or point,
        photo=media,
        phone=phone,
        confidential=True,  # an API client cannot ask the resident: protect by default
        idempotency_key=key,
    )
    route = _route_for(code, address, description)
    try:
        result = file_complaint(uow, draft, route, now)
    except IdempotencyConflict:
        raise BadRequest(409, "Idempotency-Key already used by another account") from None
    notice = (
        f"已受理，主办 {queue_label(result.lead_queue)}，处理时限 {_iso(result.deadline_at)}"
        if not result.merged
        else f"与工单 {result.number} 为同一问题，已并单办理（共 {result.report_count} 位居民反映）"
    )
    return {"service_request_id": result.number, "service_notice": notice, "account_id": params.get("account_id") or None}


async def post_request(request: web.Request) -> web.Response:
    if request.content_type == "application/json":
        try:
            raw = await request.json()
        except ValueError:
            return error_response(400, "body is not JSON")
        if not isinstance(raw, dict):
            return error_response(400, "body must be a JSON object")
        if any(isinstance(v, (dict, list)) for v in raw.values()):
            return error_response(400, "every value must be a string or a number")
        params = {str(k): str(v) for k, v in raw.items() if v is not None}
    else:
        form = await read_form(request)
        params = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    for k, v in request.query.items():
        params.setdefault(k, v)
    if any(unstorable(k) or unstorable(v) for k, v in params.items()):
        return error_response(400, "a value contains a NUL or an invalid (surrogate) character")
    params = {k: clean_message(v) for k, v in params.items()}  # CR/LF, bidi overrides: one line each
    api_key = params.pop("api_key", "")
    # per key (hashed: no keys in Redis), before anything is looked up or stored
    if api_key and not await request.app[LIMITER].hit(auth.token_hash(api_key)):
        return error_response(429, "too many requests for this api_key: " + MSG_TOO_FAST)
    try:
        result = await request.app[CONSOLE].run(
            file_request, api_key, params, request.headers.get("Idempotency-Key"), datetime.now(timezone.utc)
        )
    except BadRequest as exc:
        return error_response(exc.status, exc.description)
    return _json([result], status=201)


# --- GET requests ---------------------------------------------------------------


def _status(ticket: Ticket) -> str:
    return "open" if ticket.state in OPEN_STATES else "closed"


def _public(text: str | None, personal: bool, address: bool = False) -> str | None:
    """What a reader may see of a resident's words: as written for a key of scope 'personal',
    else without phone/ID numbers, the names they gave or their exact house number (the one
    masking function the logs use: bot.text.mask_personal_data); an address stops at the
    building/unit/flat (what follows it is no place: a name, a number)."""
    return text if personal or not text else mask_personal_data(text, public=True, address=address)


def _request_json(ticket: Ticket, confidential: bool, media_url: str | None = None,
                  personal: bool = False) -> dict[str, Any]:
    last = ticket.events[-1] if ticket.events else None
    return {
        "service_request_id": ticket.number,
        "status": _status(ticket),
        "status_notes": f"{ticket.state.value}" + (f"：{last.kind}" if last and last.kind != ticket.state.value else ""),
        "service_name": category_label(ticket.category),
        "service_code": ticket.category,
        # Residents' words may identify them: withheld when any reporter asked for confidentiality.
        "description": None if confidential else _public(ticket.description, personal),
        "agency_responsible": queue_label(ticket.lead_queue),
        "service_notice": f"{ticket.dispatch_class.label} " + (
            f"签收{ticket.limits.sign.label}，办结{ticket.limits.finish.label}" if ticket.limits
            else ticket.dispatch_class.limit_label),
        "requested_datetime": _iso(ticket.created_at),
        "updated_datetime": _iso(ticket.updated_at),
        "expected_datetime": _iso(ticket.deadline_at),
        "address": _public(ticket.location_text, personal, address=True),
        "address_id": ticket.community_code or ticket.street_code,
        "zipcode": None,
        "lat": None,
        "long": None,
        "media_url": media_url,
    }


def public_media_url(channel: str, photo: str | None) -> str | None:
    """media_url of the public output: only a photo URL an Open311 client posted (a link it
    publishes itself). A resident's photo from the chat (our upload or WeChat media) may
    show their home or face and was never meant to be published: workers see it in the
    console behind its permission check (/console/tickets/{id}/photos/{report}), the
    public never does."""
    if channel != "open311" or not photo or own_photo_name(photo):
        return None
    return photo if re.match(r"^https?://", photo) else None


def _parse_dt(value: str, name: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(400, f"{name} must be ISO 8601 (e.g. 2026-11-24T00:00:00+08:00)") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=SHANGHAI)


def query_requests(uow: ConsoleUnitOfWork, params: dict[str, str], now: datetime) -> list[dict[str, Any]]:
    api_key = params.pop("api_key", "")
    personal = False
    if api_key:
        with uow:
            scope = uow.console.api_key_scope(auth.token_hash(api_key))
        if scope is None:
            raise BadRequest(403, "api_key invalid (leave it out for the public view)")
        personal = scope == "personal"
    t = tickets
    query = select(t)
    ids = [i.strip() for i in params.get("service_request_id", "").split(",") if i.strip()]
    if ids:
        query = query.where(t.c.number.in_(ids[:MAX_RESULTS]))
    else:
        end = _parse_dt(params["end_date"], "end_date") if params.get("end_date") else now
        start = _parse_dt(params["start_date"], "start_date") if params.get("start_date") else end - DEFAULT_WINDOW
        query = query.where(t.c.created_at >= start, t.c.created_at <= end)
        codes = [c.strip() for c in params.get("service_code", "").split(",") if c.strip()]
        if codes:
            query = query.where(t.c.category.in_(codes))
        status = params.get("status", "").strip()
        if status:
            wanted = {s.strip() for s in status.split(",")}
            if not wanted <= {"open", "closed"}:
                raise BadRequest(400, "status must be open or closed")
            states = [s.value for s in OPEN_STATES] if wanted == {"open"} else None
            if wanted == {"closed"}:
                states = [s.value for s in CLOSED_STATES]
            if states is not None:
                query = query.where(t.c.state.in_(states))
    query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(MAX_RESULTS)
    with uow:
        conn = uow.connection()
        rows = conn.execute(query).all()
        from bot.storage.repository import SqlTicketRepository

        found = SqlTicketRepository(conn).load(rows)
        secret: set[int] = set()
        media: dict[int, str] = {}
        if found:
            photos = conn.execute(
                select(ticket_reports.c.ticket_id, ticket_reports.c.channel, ticket_reports.c.photo)
                .where(ticket_reports.c.ticket_id.in_([x.id for x in found]), ticket_reports.c.photo.is_not(None))
                .order_by(ticket_reports.c.id)
            ).all()
            for row in photos:
                url = public_media_url(row.channel, row.photo)
                if url:
                    media.setdefault(row.ticket_id, url)
            secret = set(
                conn.execute(
                    select(ticket_reports.c.ticket_id).where(
                        ticket_reports.c.ticket_id.in_([x.id for x in found]), ticket_reports.c.confidential.is_(True)
                    )
                ).scalars()
            )
    return [_request_json(x, x.id in secret, media.get(x.id), personal) for x in found]


async def get_requests(request: web.Request) -> web.Response:
    try:
        found = await request.app[CONSOLE].run(query_requests, dict(request.query), datetime.now(timezone.utc))
    except BadRequest as exc:
        return error_response(exc.status, exc.description)
    return _json(found)


async def get_request(request: web.Request) -> web.Response:
    number = request.match_info["request_id"]
    params = {"service_request_id": number}
    if request.query.get("api_key"):
        params["api_key"] = request.query["api_key"]
    try:
        found = await request.app[CONSOLE].run(query_requests, params, datetime.now(timezone.utc))
    except BadRequest as exc:
        return error_response(exc.status, exc.description)
    if not found:
        return error_response(404, f"no service request {number}")
    return _json(found)


async def discovery(request: web.Request) -> web.Response:
    return _json(
        {
            "changeset": "2026-11-24T00:00:00+08:00",
            "contact": "12345 市民服务热线",
            "key_service": "向呼和浩特 12345 派单中心申请 api_key",
            "endpoints": [
                {"specification": "http://wiki.open311.org/GeoReport_v2", "url": f"{request.scheme}://{request.host}{PREFIX}",
                 "formats": ["application/json"], "type": "production"}
            ],
        }
    )


def setup(app: web.Application) -> None:
    app[LIMITER] = RateLimiter.from_env("open311", 30, env=RATE_LIMIT_ENV)
    r = app.router
    r.add_get("/open311/discovery.json", discovery)
    r.add_get(f"{PREFIX}/services.json", services)
    r.add_post(f"{PREFIX}/requests.json", post_request)
    r.add_get(f"{PREFIX}/requests.json", get_requests)
    r.add_get(f"{PREFIX}/requests/{{request_id}}.json", get_request)
