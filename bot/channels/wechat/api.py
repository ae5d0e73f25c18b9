"""Outbound calls to the WeChat API (aiohttp, each with its own short timeout).

  GET  {api}/cgi-bin/token?grant_type=client_credential&appid=…&secret=…
  GET  {api}/cgi-bin/media/get?access_token=…&media_id=…
  POST {api}/cgi-bin/message/custom/send?access_token=…
  POST {api}/cgi-bin/message/template/send?access_token=…

The access_token lives in the database (wechat_tokens) and is shared by every worker: it
is refreshed 5 minutes before it expires by whichever worker wins the lease; the others
wait for the new row. When WeChat answers 40001/40014/42001 (token invalid or expired),
that token is marked due, refreshed once, and the call is retried once.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.channels.wechat.store import InThread, WeChatStore, utc

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.weixin.qq.com"
TOKEN_INVALID = {40001, 40014, 42001}
OUT_OF_WINDOW = {45015, 45047}  # 45015: >48 h since the resident wrote; 45047: too many CS messages
TIMEOUT = -1  # pseudo errcode: the call timed out
NETWORK = -2  # pseudo errcode: connection failed / bad answer


class WeChatApiError(Exception):
    def __init__(self, errcode: int, errmsg: str = ""):
        super().__init__(f"{errcode} {errmsg}".strip())
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class Timeouts:
    token: float = 5.0
    media: float = 3.0
    send: float = 5.0


class WeChatApi:
    def __init__(self, base: str, appid: str, secret: str, store: WeChatStore, clock: Callable[[], float],
                 timeouts: Timeouts | None = None, early_seconds: float = 300.0, lease_seconds: float = 15.0):
        self.base = base.rstrip("/")
        self.appid = appid
        self.secret = secret
        self.store = store
        self.db = InThread(lambda: self.store)
        self.clock = clock
        self.timeouts = timeouts or Timeouts()
        self.early_seconds = early_seconds
        self.lease_seconds = lease_seconds
        self.owner = uuid.uuid4().hex  # this worker, for the refresh lease
        self._cached: tuple[str, float] | None = None  # (token, expires_at epoch seconds)

    # --- transport ----------------------------------------------------------------
    async def _request(self, method: str, path: str, timeout: float, params: dict[str, str],
                       payload: dict[str, Any] | None = None, max_bytes: int = 1 << 20) -> tuple[bytes, str]:
        url = f"{self.base}{path}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                data = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
                headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else {}
                async with session.request(method, url, params=params, data=data, headers=headers,
                                           allow_redirects=False) as resp:
                    body = await resp.content.read(max_bytes + 1)
                    if len(body) > max_bytes:
                        raise WeChatApiError(NETWORK, "response too large")
                    if resp.status != 200:
                        raise WeChatApiError(NETWORK, f"HTTP {resp.status}")
                    return body, resp.headers.get("Content-Type", "")
        except asyncio.TimeoutError:
            raise WeChatApiError(TIMEOUT, f"{path} timed out after {timeout} s")
        except aiohttp.ClientError as exc:
            raise WeChatApiError(NETWORK, f"{path}: {type(exc).__name__}")

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise WeChatApiError(NETWORK, "answer is not JSON")
        if not isinstance(data, dict):
            raise WeChatApiError(NETWORK, "answer is not a JSON object")
        return data

    # --- access token ----------------------------------------------------------------
    def _fresh(self, expires_at: float | None) -> bool:
        return expires_at is not None and expires_at - self.early_seconds > self.clock()

    async def access_token(self) -> str:
        if self._cached and self._fresh(self._cached[1]):
            return self._cached[0]
        deadline = self.clock() + self.lease_seconds + self.timeouts.token
        while True:
            row = await self.db(WeChatStore.token, self.appid)
            if row and row.get("access_token") and row.get("expires_at"):
                exp = row["expires_at"].timestamp()
                if self._fresh(exp):
                    self._cached = (row["access_token"], exp)
                    return row["access_token"]
            if await self.db(WeChatStore.try_lease, self.appid, self.owner, self.lease_seconds, self.early_seconds):
                try:
                    token, expires_in = await self._fetch_token()
                except BaseException:
                    await self.db(WeChatStore.release_lease, self.appid, self.owner)
                    raise
                exp = self.clock() + expires_in
                await self.db(WeChatStore.save_token, self.appid, self.owner, token, utc(exp))
                self._cached = (token, exp)
                log.info("wechat access_token refreshed (valid %d s)", expires_in)
                return token
            if self.clock() > deadline:
                raise WeChatApiError(TIMEOUT, "access_token refresh by another worker did not finish")
            await asyncio.sleep(0.1)  # another worker is refreshing: wait for its row

    async def _fetch_token(self) -> tuple[str, int]:
        body, _ = await self._request("GET", "/cgi-bin/token", self.timeouts.token, {
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
        data = self._json(body)
        token = data.get("access_token")
        if not token or not isinstance(token, str):
            raise WeChatApiError(int(data.get("errcode") or NETWORK), str(data.get("errmsg") or "no access_token"))
        try:
            expires_in = int(data.get("expires_in") or 7200)
        except (TypeError, ValueError):
            expires_in = 7200
        return token, max(60, expires_in)

    async def _invalidate(self, token: str) -> None:
        self._cached = None
        await self.db(WeChatStore.invalidate_token, self.appid, token)

    # --- calls ---------------------------------------------------------------------------
    async def post_json(self, path: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """POST with the access_token; errcode ≠ 0 raises WeChatApiError. Retries once on
        an invalid token (after one refresh)."""
        for attempt in (1, 2):
            token = await self.access_token()
            body, _ = await self._request("POST", path, timeout or self.timeouts.send, {"access_token": token}, payload)
            data = self._json(body)
            code = int(data.get("errcode") or 0)
            if code in TOKEN_INVALID and attempt == 1:
                log.warning("wechat %s: token rejected (%s), refreshing once", path, code)
                await self._invalidate(token)
                continue
            if code:
                raise WeChatApiError(code, str(data.get("errmsg") or ""))
            return data
        raise AssertionError("unreachable")

    async def send_custom_text(self, openid: str, text: str) -> dict[str, Any]:
        return await self.post_json("/cgi-bin/message/custom/send",
                                    {"touser": openid, "msgtype": "text", "text": {"content": text}})

    async def send_template(self, openid: str, template_id: str, data: dict[str, Any],
                            url: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if url:
            payload["url"] = url
        return await self.post_json("/cgi-bin/message/template/send", payload)

    async def get_media(self, media_id: str, max_bytes: int) -> bytes:
        """The bytes of a temporary media file (an image the resident sent)."""
        for attempt in (1, 2):
            token = await self.access_token()
            body, ctype = await self._request("GET", "/cgi-bin/media/get", self.timeouts.media,
                                              {"access_token": token, "media_id": media_id}, max_bytes=max_bytes)
            if body[:1] == b"{" or "json" in ctype or ctype.startswith("text/"):
                try:
                    data = json.loads(body.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    data = None
                if isinstance(data, dict) and data.get("errcode"):
                    code = int(data["errcode"])
                    if code in TOKEN_INVALID and attempt == 1:
                        await self._invalidate(token)
                        continue
                    raise WeChatApiError(code, str(data.get("errmsg") or ""))
            return body
        raise AssertionError("unreachable")
