"""A local stand-in for the WeChat API (api.weixin.qq.com), on aiohttp.

Records every call; fails on demand: an errcode for the next call(s) of a path, a delay
longer than the client's timeout, 45015 for residents outside the 48-hour window, a
revoked token (40001) or an expired one (42001), a media id whose body is not an image.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.photos import jpeg_with_gps, png_with_text

# what a resident's phone sends: GPS EXIF, device, comment, XMP (the channel strips them)
JPEG = jpeg_with_gps()
PNG = png_with_text()


@dataclass
class Call:
    path: str
    query: dict[str, str]
    json: dict[str, Any] | None
    at: float


@dataclass
class Failure:
    errcode: int | None = None
    delay: float = 0.0
    status: int = 200


class WeChatStandIn:
    def __init__(self, appid: str, secret: str, expires_in: int = 7200):
        self.appid, self.secret = appid, secret
        self.expires_in = expires_in
        self.calls: list[Call] = []
        self.valid_tokens: set[str] = set()
        self.expired_tokens: set[str] = set()
        self.out_of_window: set[str] = set()  # openids: custom/send → 45015
        self.media: dict[str, tuple] = {}  # media_id → (bytes, content type)
        self.failures: dict[str, deque[Failure]] = defaultdict(deque)
        self.token_delay = 0.0
        self._serial = itertools.count(1)
        self._server: TestServer | None = None

    # --- control -------------------------------------------------------------------
    def fail_next(self, path: str, errcode: int | None = None, delay: float = 0.0, times: int = 1,
                  status: int = 200) -> None:
        for _ in range(times):
            self.failures[path].append(Failure(errcode, delay, status))

    def revoke(self, token: str) -> None:
        self.valid_tokens.discard(token)

    def expire(self, token: str) -> None:
        self.valid_tokens.discard(token)
        self.expired_tokens.add(token)

    def add_media(self, media_id: str, body: bytes = JPEG, content_type: str = "image/jpeg") -> None:
        self.media[media_id] = (body, content_type)

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    @property
    def token_calls(self) -> list[Call]:
        return self.calls_to("/cgi-bin/token")

    def sent(self, openid: str | None = None, path: str = "/cgi-bin/message/custom/send") -> list[dict[str, Any]]:
        """Successful sends (custom by default), optionally to one resident."""
        out = []
        for c in self.calls_to(path):
            if c.json is None or c.json.get("_failed"):
                continue
            if openid is None or c.json.get("touser") == openid:
                out.append(c.json)
        return out

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # --- server ----------------------------------------------------------------------
    async def start(self, port: int | None = None) -> str:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_get("/cgi-bin/media/get", self._media)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom)
        app.router.add_post("/cgi-bin/message/template/send", self._template)
        self._server = TestServer(app, host="127.0.0.1", **({"port": port} if port else {}))
        await self._server.start_server()
        return str(self._server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    # --- handlers -----------------------------------------------------------------------
    async def _record(self, request: web.Request) -> Call:
        payload = None
        if request.method == "POST":
            try:
                payload = json.loads(await request.text())
            except ValueError:
                payload = {"_unparsable": True}
        call = Call(request.path, dict(request.query), payload, time.monotonic())
        self.calls.append(call)
        return call

    async def _failure(self, path: str) -> web.Response | None:
        queue = self.failures.get(path)
        if not queue:
            return None
        f = queue.popleft()
        if f.delay:
            await asyncio.sleep(f.delay)
        if f.status != 200:
            return web.Response(status=f.status, text="upstream error")
        if f.errcode is not None:
            return web.json_response({"errcode": f.errcode, "errmsg": f"stand-in failure {f.errcode}"})
        return None

    def _token_error(self, token: str) -> web.Response | None:
        if token in self.valid_tokens:
            return None
        if token in self.expired_tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        return web.json_response({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})

    async def _token(self, request: web.Request) -> web.Response:
        await self._record(request)
        failed = await self._failure(request.path)
        if failed is not None:
            return failed
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        q = request.query
        if q.get("grant_type") != "client_credential" or q.get("appid") != self.appid or q.get("secret") != self.secret:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        token = f"TOKEN-{next(self._serial)}"
        self.valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": self.expires_in})

    async def _media(self, request: web.Request) -> web.Response:
        await self._record(request)
        failed = await self._failure(request.path)
        if failed is not None:
            return failed
        bad = self._token_error(request.query.get("access_token", ""))
        if bad is not None:
            return bad
        item = self.media.get(request.query.get("media_id", ""))
        if item is None:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        body, ctype = item
        return web.Response(body=body, content_type=ctype)

    async def _send(self, request: web.Request, kind: str) -> web.Response:
        call = await self._record(request)
        failed = await self._failure(request.path)
        if failed is not None:
            call.json = {**(call.json or {}), "_failed": True}
            return failed
        bad = self._token_error(request.query.get("access_token", ""))
        if bad is not None:
            call.json = {**(call.json or {}), "_failed": True}
            return bad
        body = call.json or {}
        if kind == "custom" and body.get("touser") in self.out_of_window:
            call.json = {**body, "_failed": True}
            return web.json_response({"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"})
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": next(self._serial)})

    async def _custom(self, request: web.Request) -> web.Response:
        return await self._send(request, "custom")

    async def _template(self, request: web.Request) -> web.Response:
        return await self._send(request, "template")
