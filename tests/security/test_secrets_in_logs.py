"""Secrets never appear in logs, and the Rasa HTTP API is closed without its token.

One full run of the real stack (bot.ops.serve.start_stack + start_web: action server, Rasa with
our channels, the web server with the console and its notifier), every secret set to a
unique value: the Rasa token, the WeChat token / EncodingAESKey / AppSecret, the access_token
the WeChat API stand-in hands out, a console password. A resident files a complaint over
REST with a mobile number and an 18-digit ID number in the messages; another talks over
WeChat (encrypted) with theirs and sends a photo (the channel fetches an access_token); a
worker logs in to the console (and mistypes once). Then every log file of the run is read:
none of those values may appear (masked forms such as 138****5678 are fine).
"""
from __future__ import annotations

import asyncio
import base64
import re
import secrets
import socket
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.console import services as svc
from bot.console.tables import outbox
from bot.console.uow import ConsoleUnitOfWork
from bot.nlu.explain import latest_model
from bot.ops.serve import start_stack, start_web, stop_stack
from bot.services.setup import prepare_store
from bot.storage.engine import make_engine
from bot.storage.tables import ticket_reports
from tests.wechat.standin import JPEG, WeChatStandIn
from tests.wechat.wxclient import WeChatServer, image_msg, text_msg

PHONE_REST = "13812345678"
ID_REST = "110101199003071234"
PHONE_WECHAT = "13987654321"
ID_WECHAT = "11010519491231002X"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def rest_say(session: aiohttp.ClientSession, rasa_url: str, sender: str, text: str) -> list[dict]:
    async with session.post(f"{rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": text}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def console_login(session: aiohttp.ClientSession, web_url: str, username: str, password: str) -> int:
    async with session.get(f"{web_url}/console/login") as r:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)
    async with session.post(f"{web_url}/console/login", data={"csrf": csrf, "username": username,
                                                              "password": password}, allow_redirects=False) as r:
        return r.status


@pytest.mark.asyncio
async def test_no_secret_in_any_log_and_the_rasa_api_needs_its_token(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'tickets.db'}"
    engine = make_engine(db_url)
    prepare_store(engine)
    password = "Pw-" + secrets.token_urlsafe(12)
    wrong_password = "Wrong-" + secrets.token_urlsafe(12)
    svc.create_user(ConsoleUnitOfWork(engine), "seclog", "日志检查员", password, "admin", (),
                    datetime.now(timezone.utc))
    rasa_token = "rasa-" + secrets.token_hex(16)
    appid = "wx" + secrets.token_hex(8)
    wx_secret = "sec" + secrets.token_hex(14)
    wx_token = "tok" + secrets.token_hex(10)
    aes_key = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    standin = WeChatStandIn(appid, wx_secret)
    access_prefix = "AT" + secrets.token_hex(12)
    standin._serial = iter(f"{access_prefix}{i}" for i in range(1, 1000))  # the access_tokens it hands out
    standin_port = free_port()
    await standin.start(port=standin_port)
    logs = tmp_path / "logs"
    env = {
        "QC_DATABASE_URL": db_url, "QC_UPLOAD_DIR": str(tmp_path / "uploads"),
        "QC_WECHAT_TOKEN": wx_token, "QC_WECHAT_AES_KEY": aes_key, "QC_WECHAT_APPID": appid,
        "QC_WECHAT_SECRET": wx_secret, "QC_WECHAT_API_BASE": f"http://127.0.0.1:{standin_port}",
        "QC_NOTIFIER_INTERVAL": "0.5",
        "LOG_LEVEL": "DEBUG",  # the most an operator could turn on: Rasa logs every message at DEBUG
    }
    rasa_port, actions_port, web_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen] = []
    try:
        procs += await asyncio.to_thread(start_stack, rasa_port, actions_port, str(latest_model()), logs,
                                         rasa_token, env)
        procs.append(await asyncio.to_thread(start_web, rasa_port, web_port, rasa_token, logs, env))
        rasa_url, web_url = f"http://127.0.0.1:{rasa_port}", f"http://127.0.0.1:{web_port}"
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            # --- the Rasa HTTP API: closed without the token --------------------------------------
            for method, path in (("GET", "/status"), ("GET", "/conversations/x/tracker"),
                                 ("POST", "/conversations/x/messages"), ("PUT", "/model"),
                                 ("POST", "/conversations/x/trigger_intent"), ("GET", "/domain")):
                for query in ({}, {"token": "wrong-" + rasa_token}):
                    async with s.request(method, rasa_url + path, params=query, json={}) as r:
                        assert r.status in (401, 403), f"{method} {path} {query}: {r.status}"
            async with s.get(f"{rasa_url}/status", params={"token": rasa_token}) as r:
                assert r.status == 200

            # --- a complaint over REST, with a mobile and an ID number ------------------------------
            sender = "seclog-" + uuid.uuid4().hex[:8]
            for text in (f"新城区公主府社区 楼下天天有人遛狗不牵绳 孩子都不敢下楼 我身份证号{ID_REST}",
                         "没有照片", f"电话{PHONE_REST}", "不需要保密", "确认提交"):
                await rest_say(s, rasa_url, sender, text)

            # --- WeChat (encrypted): phone and ID in a message, then a photo ------------------------
            wx = WeChatServer(f"{rasa_url}/webhooks/wechat/webhook", wx_token, appid, aes_key)
            openid = "oSecLog" + uuid.uuid4().hex[:20]
            reply = await wx.post(text_msg(openid, f"下水道堵了 我电话{PHONE_WECHAT} 身份证{ID_WECHAT}"),
                                  encrypted=True)
            assert reply.status == 200, reply.body
            standin.add_media("MEDIA_seclog", JPEG)
            reply = await wx.post(image_msg(openid, "MEDIA_seclog"), encrypted=True)
            assert reply.status == 200, reply.body
            assert await standin.wait_for(lambda: bool(standin.token_calls), timeout=30)

            # --- the console: a mistyped and a good log-in -------------------------------------
            assert await console_login(s, web_url, "seclog", wrong_password) == 401
            assert await console_login(s, web_url, "seclog", password) == 303
            async with s.get(f"{web_url}/console/queue") as r:
                assert r.status == 200
            # the admin signs the REST ticket: the notifier then tells the resident through
            # Rasa's API with the token (the path whose logs are checked below)
            with engine.connect() as conn:
                ticket_id = conn.execute(select(ticket_reports.c.ticket_id).where(
                    ticket_reports.c.sender_id == "rest:" + sender)).scalar_one()
            async with s.get(f"{web_url}/console/tickets/{ticket_id}") as r:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)
            async with s.post(f"{web_url}/console/tickets/{ticket_id}/accept", data={"csrf": csrf},
                              allow_redirects=False) as r:
                assert r.status == 303, await r.text()
            sent = []
            for _ in range(120):
                with engine.connect() as conn:
                    sent = conn.execute(select(outbox.c.event, outbox.c.status).where(
                        outbox.c.kind == "resident", outbox.c.recipient == "rest:" + sender)).all()
                if ("accepted", "sent") in sent:
                    break
                await asyncio.sleep(0.5)
            assert ("accepted", "sent") in sent, sent
    finally:
        await asyncio.to_thread(stop_stack, procs)
        await standin.close()

    # the complaint was filed with the phone: the number really went through the actions
    with engine.connect() as conn:
        phones = conn.execute(select(ticket_reports.c.phone).where(ticket_reports.c.sender_id == "rest:" + sender)).scalars().all()
    assert phones == [PHONE_REST], phones

    files = sorted(p for p in logs.rglob("*") if p.is_file() and p.suffix == ".log")
    names = {p.name.split("-")[0] for p in files}
    assert {"rasa", "actions", "web"} <= names, files
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
    # the run logged the messages (Rasa at DEBUG), masked: the check below is not vacuous
    assert "138****5678" in text and "110***********1234" in text and "139****4321" in text
    forbidden = {
        "console password": password, "mistyped password": wrong_password, "Rasa token": rasa_token,
        "WeChat token": wx_token, "WeChat AES key": aes_key, "WeChat AppSecret": wx_secret,
        "access_token": access_prefix, "REST phone": PHONE_REST, "REST ID number": ID_REST,
        "WeChat phone": PHONE_WECHAT, "WeChat ID number": ID_WECHAT,
    }
    leaks = {}
    for what, value in forbidden.items():
        for p in files:
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if value in line:
                    leaks.setdefault(what, []).append(f"{p.name}:{n}: {line[:200]}")
    assert not leaks, "secrets in the logs:\n" + "\n".join(f"{k}: {v[:3]}" for k, v in leaks.items())


def test_start_stack_never_opens_the_rasa_api_without_a_token(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """bot.ops.serve starts Rasa with --enable-api only together with a token, which it passes in
    the environment (bot.ops.rasa_run adds it), never on the command line (`ps` shows that)."""
    import bot.ops.serve as serve

    commands: list[list[str]] = []
    envs: list[dict] = []

    class Exited:
        pid = 0

        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            commands.append(cmd)
            envs.append(kwargs.get("env") or {})

        def poll(self) -> int:
            return 1  # "exited at once": start_stack gives up without waiting

        def wait(self, timeout: float = 0) -> int:
            return 1

    monkeypatch.setattr(serve.subprocess, "Popen", Exited)
    for token in (None, "", "tok-123"):
        commands.clear()
        envs.clear()
        with pytest.raises(RuntimeError):
            serve.start_stack(free_port(), free_port(), model="models", log_dir=tmp_path, api_token=token)
        [(rasa, env)] = [(c, e) for c, e in zip(commands, envs) if "actions" not in c]
        assert "--auth-token" not in rasa and "bot.ops.rasa_run" in rasa
        if token:
            assert "--enable-api" in rasa and env["QC_RASA_TOKEN"] == token
            assert not any(token in part for part in rasa)
        else:
            assert "--enable-api" not in rasa


def test_log_records_are_masked_in_any_logger(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import bot  # noqa: F401 - installs the mask

    with caplog.at_level(logging.DEBUG):
        logging.getLogger("rasa.core.processor").debug(
            '{"parse_data_text": "\\u7535\\u8bdd13812345678 \\u8eab\\u4efd\\u8bc1110101199003071234"}')
        logging.getLogger("anything").info("call %s or %s", "0471-6612345", "13987654321")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "13812345678" not in text and "110101199003071234" not in text and "13987654321" not in text
    assert "电话138****5678" in text and "身份证110***********1234" in text and "139****4321" in text
    assert "6612345" not in text


def test_tracebacks_are_masked_too() -> None:
    """An exception's text lands in the log with its traceback (e.g. a failed INSERT shows its
    parameters): masked like the message."""
    import io
    import logging

    import bot  # noqa: F401 - installs the mask

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("tests.security.traceback")
    log.addHandler(handler)
    try:
        try:
            raise ValueError(f"INSERT failed [parameters: ('{PHONE_REST}', '{ID_REST}')]")
        except ValueError:
            log.exception("filing failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert "Traceback" in text and "INSERT failed" in text
    assert PHONE_REST not in text and ID_REST not in text
    assert "138****5678" in text and "110***********1234" in text
