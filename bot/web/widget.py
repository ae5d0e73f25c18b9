"""The chat widget: its static files, photo upload and photo download.

    GET  /widget/embed.js        the one script a government page includes
    GET  /widget/                the chat page (the embed script shows it in an iframe)
    GET  /widget/<file>          the page's scripts/styles, built into widget/dist/ by `make widget`
    POST /widget/upload          a photo (multipart field "file"; ≤ 5 MiB; JPEG/PNG/WebP by magic bytes;
                                 ≤ QC_UPLOAD_RATE_LIMIT a minute per client address, default 10)
                                 for the conversation named by X-QC-Session (the widget's Socket.IO session
                                 id) or X-QC-Rest-Sender (a trusted REST front-end: with QC_REST_TOKEN set,
                                 also Authorization: Bearer); the photo belongs to that conversation only
    GET  /widget/photo/<id>?s&e&sig  the uploader's own short-lived signed link (the upload answers it as
                                 "view"); without a valid signature 404. Workers see photos only through
                                 the console's permission-checked route.

The page talks to Rasa's Socket.IO channel at QC_WIDGET_SOCKET_URL: a URL, or `same-origin`
(the page's own origin: behind nginx, which proxies /socket.io/ to Rasa; `make run-cluster`
sets it); by default Rasa's own address from QC_RASA_URL. Never from the request's Host
header, which the client chooses. Uploads are stored outside any
web root (var/uploads/, QC_UPLOAD_DIR) under a random name and are only served by id.
"""
from __future__ import annotations

import asyncio
import html
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web

from bot.paths import REPO_ROOT
from bot.security.bearer import bearer_ok
from bot.security.ratelimit import MSG_TOO_FAST, UPLOAD_LIMIT_ENV, RateLimiter
from bot.security.sessionid import SECRET_ENV, SESSION_ID, issued_by_us, photo_link_ok, sign_photo_link
from bot.uploads import (
    CONTENT_TYPES,
    MAX_PHOTO_BYTES,
    PHOTO_NAME,
    SNIFF_BYTES,
    PhotoUnreadable,
    photo_owner,
    save_photo,
    sniff_image,
    upload_folder,
)
from bot.web import clientaddr
from bot.web.keys import SETTINGS

log = logging.getLogger(__name__)

UPLOAD_HEADER = "X-QC-Widget"  # a custom header: a cross-site <form> cannot send it
SESSION_HEADER = "X-QC-Session"  # the widget's Socket.IO session id: the photo's owner
REST_SENDER_HEADER = "X-QC-Rest-Sender"  # a trusted REST front-end's sender
_REST_SENDER = re.compile(r"^[\w\-:.@]{1,128}$")
_PHOTO_NAME = re.compile(rf"^{PHOTO_NAME}$")
_HOST = re.compile(r"^(?P<host>[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?$")
# the files of widget/dist/ the server hands out (nothing else from that folder)
STATIC = {
    "embed.js": "application/javascript",
    "widget.js": "application/javascript",
    "widget.css": "text/css",
    "vendor/socket.io.min.js": "application/javascript",
}


@dataclass(frozen=True)
class WidgetConfig:
    dist_dir: Path
    upload_dir: Path
    socket_url: str = ""  # a URL, SAME_ORIGIN, or empty: Rasa's address from QC_RASA_URL
    public_url: str = ""  # empty: the origin the request came to (for photo links in tickets)
    frame_ancestors: str = "*"  # pages allowed to embed the widget (CSP frame-ancestors)
    # our reverse proxies' addresses (QC_TRUSTED_PROXIES, comma-separated): behind them the
    # client is the last X-Forwarded-For hop that is not one of ours (for the upload limit)
    trusted_proxies: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> WidgetConfig:
        return cls(
            dist_dir=Path(os.environ.get("QC_WIDGET_DIST") or REPO_ROOT / "widget" / "dist"),
            upload_dir=upload_folder(),
            socket_url=os.environ.get("QC_WIDGET_SOCKET_URL", "").rstrip("/"),
            public_url=os.environ.get("QC_PUBLIC_URL", "").rstrip("/"),
            frame_ancestors=os.environ.get("QC_WIDGET_FRAME_ANCESTORS", "*"),
            trusted_proxies=clientaddr.trusted_proxies_from_env(),
        )


WIDGET = web.AppKey("widget", WidgetConfig)
UPLOAD_LIMITER = web.AppKey("widget_upload_limiter", RateLimiter)


def photo_path(upload_dir: Path, name: str) -> Path | None:
    """The stored file for a photo id, or None when the id is not one we could have made."""
    if not isinstance(name, str) or not _PHOTO_NAME.match(name):
        return None
    path = upload_dir / name
    if path.resolve().parent != upload_dir.resolve():
        return None
    return path


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _host_port(request: web.Request) -> tuple[str | None, int | None]:
    """The host (and port) the browser used, from the Host header; (None, None) if malformed."""
    m = _HOST.match(request.host or "")
    if not m:
        return None, None
    return m.group("host"), int(m.group("port")) if m.group("port") else None


def _origin(request: web.Request) -> str:
    host, port = _host_port(request)
    if host is None:
        return request.app[SETTINGS].rasa_url.split("://")[0] + "://127.0.0.1"
    default = {"http": 80, "https": 443}.get(request.scheme)
    return f"{request.scheme}://{host}" + (f":{port}" if port and port != default else "")


SAME_ORIGIN = "same-origin"


def socket_url(request: web.Request) -> str:
    """Where the page's Socket.IO client connects; "" = the page's own origin. Configured,
    never built from the Host header (a client could point residents anywhere)."""
    cfg = request.app[WIDGET]
    if cfg.socket_url == SAME_ORIGIN:
        return ""
    if cfg.socket_url:
        return cfg.socket_url
    rasa = urlsplit(request.app[SETTINGS].rasa_url)
    return f"{rasa.scheme}://{rasa.netloc}"


def client_address(request: web.Request) -> str:
    return clientaddr.client_address(request.remote, request.headers.get("X-Forwarded-For", ""),
                                     request.app[WIDGET].trusted_proxies)


def _security_headers(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


async def page(request: web.Request) -> web.StreamResponse:
    cfg = request.app[WIDGET]
    index = cfg.dist_dir / "index.html"
    if not index.is_file():
        return _error(503, "widget_not_built", "widget not built: run `make widget`")
    url = socket_url(request)
    connect = "'self'"  # same origin: 'self' covers ws(s) to it too (CSP 3)
    if url:
        parts = urlsplit(url)
        ws = ("wss" if parts.scheme == "https" else "ws") + f"://{parts.netloc}"
        connect += f" {parts.scheme}://{parts.netloc} {ws}"
    body = index.read_text(encoding="utf-8").replace("{{SOCKET_URL}}", html.escape(url, quote=True))
    resp = web.Response(text=body, content_type="text/html", charset="utf-8")
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; "
        f"frame-ancestors {cfg.frame_ancestors}"
    )
    resp.headers["Cache-Control"] = "no-cache"
    return _security_headers(resp)


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    ctype = STATIC.get(name)
    if ctype is None:
        raise web.HTTPNotFound()
    path = request.app[WIDGET].dist_dir / name
    if not path.is_file():
        return _error(503, "widget_not_built", "widget not built: run `make widget`")
    resp = web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
    if name == "embed.js":  # loaded by other sites' pages
        resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return _security_headers(resp)


def uploader(request: web.Request) -> str | None:
    """The conversation an upload is for (its tracker's sender id), None when not named right."""
    session = request.headers.get(SESSION_HEADER, "")
    if session:
        # with the shared secret configured the web server checks the id was issued by Rasa
        shared = os.environ.get(SECRET_ENV) or os.environ.get("QC_RASA_TOKEN")
        ok = issued_by_us(session) if shared else bool(SESSION_ID.match(session))
        return session if ok else None
    sender = request.headers.get(REST_SENDER_HEADER, "")
    if sender and _REST_SENDER.match(sender):
        token = os.environ.get("QC_REST_TOKEN")
        if token and not bearer_ok(request.headers.get("Authorization"), token):
            return None
        return "rest:" + sender
    return None


async def upload(request: web.Request) -> web.Response:
    cfg = request.app[WIDGET]
    if request.headers.get(UPLOAD_HEADER) != "1":
        return _error(403, "forbidden", "upload only from the widget")
    owner = uploader(request)
    if owner is None:
        return _error(403, "no_session", "请在对话中上传照片（缺少会话）")
    if not await request.app[UPLOAD_LIMITER].hit(client_address(request)):
        log.warning("widget: upload rate limit reached for a client, refused")
        return _error(429, "too_many_uploads", MSG_TOO_FAST)
    if request.content_length is not None and request.content_length > MAX_PHOTO_BYTES + 64 * 1024:
        return _error(413, "too_large", "照片不能超过 5 MB")
    try:
        reader = await request.multipart()
    except Exception:
        return _error(400, "bad_request", "请用表单字段 file 上传照片")
    try:
        field = None
        while True:
            part = await reader.next()
            if part is None:
                break
            if getattr(part, "name", None) == "file":
                field = part
                break
            await part.release()
        if not isinstance(field, BodyPartReader):
            return _error(400, "no_file", "没有收到照片（表单字段 file）")
        data = bytearray()
        while True:
            chunk = await field.read_chunk(64 * 1024)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_PHOTO_BYTES:
                return _error(413, "too_large", "照片不能超过 5 MB")
    except web.HTTPException:
        raise
    except Exception:  # a broken multipart body (no boundary, bad part headers, cut short…): the client's fault
        return _error(400, "bad_request", "请用表单字段 file 上传照片")
    if not data:
        return _error(400, "empty", "照片是空的")
    ext = sniff_image(bytes(data[:SNIFF_BYTES]))
    if ext is None:
        return _error(415, "bad_type", "只能上传 JPEG、PNG 或 WebP 格式的照片")
    try:  # stored without GPS position, device or thumbnail (decoding off the event loop)
        name = await asyncio.to_thread(save_photo, bytes(data), ext, cfg.upload_dir, owner)
    except PhotoUnreadable:
        return _error(415, "bad_image", "照片无法读取，请换一张")
    base = cfg.public_url or _origin(request)
    log.info("photo %s uploaded (%d bytes)", name, len(data))
    # url: the reference the chat sends (ours only in this conversation); view: the uploader's
    # own short-lived link to show it in the chat
    return web.json_response({"id": name, "url": f"{base}/widget/photo/{name}",
                              "view": f"{base}/widget/photo/{name}?{sign_photo_link(name, owner)}"}, status=201)


async def photo(request: web.Request) -> web.StreamResponse:
    cfg = request.app[WIDGET]
    name = request.match_info["name"]
    path = photo_path(cfg.upload_dir, name)
    if path is None or not path.is_file():
        raise web.HTTPNotFound()
    q = request.query
    if not photo_link_ok(name, photo_owner(cfg.upload_dir, name), q.get("s", ""), q.get("e", ""), q.get("sig", "")):
        raise web.HTTPNotFound()  # not the uploader's signed link, or expired: workers use the console
    ext = path.suffix.lstrip(".")
    resp = web.FileResponse(path, headers={
        "Content-Type": CONTENT_TYPES[ext],
        "Content-Disposition": "inline",
        "Cache-Control": "private, no-store",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })
    return _security_headers(resp)


async def to_page(_: web.Request) -> web.Response:
    raise web.HTTPFound("/widget/")


def setup_widget(app: web.Application, config: WidgetConfig | None = None) -> None:
    app[WIDGET] = config or WidgetConfig.from_env()
    app[UPLOAD_LIMITER] = RateLimiter.from_env("upload", 10, env=UPLOAD_LIMIT_ENV)
    app.router.add_get("/widget", to_page)
    app.router.add_get("/widget/", page)
    app.router.add_post("/widget/upload", upload)
    app.router.add_get(rf"/widget/photo/{{name:{PHOTO_NAME}}}", photo)
    app.router.add_get(r"/widget/{name:(?:vendor/)?[A-Za-z0-9_.\-]+}", static)
