"""bot/channels/common.py: the one place the chat channels' messages and admission live (issue 16)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from bot.channels import common
from bot.channels.common import MAX_MESSAGE_CHARS, TOO_FAST, TOO_LONG, admit, text_for_rasa
from bot.paths import REPO_ROOT
from bot.security.ratelimit import RateLimiter


def limiters(client_limit: int, sender_limit: int) -> tuple[RateLimiter, RateLimiter]:
    return (RateLimiter(client_limit, 60, "t-client", redis_url=""),
            RateLimiter(sender_limit, 60, "t-sender", redis_url=""))


@pytest.mark.asyncio
async def test_length_then_client_then_sender() -> None:
    client, sender = limiters(3, 2)
    too_long = "堵" * (MAX_MESSAGE_CHARS + 1)
    assert await admit("rest", too_long, "1.2.3.4", "a", client, sender) is TOO_LONG
    # a refused-for-length message counted against no limit: three pass the client limit of 3
    assert [await admit("rest", "x", "1.2.3.4", s, client, sender) for s in ("a", "a", "b")] == [None, None, None]
    assert await admit("rest", "x", "1.2.3.4", "c", client, sender) is TOO_FAST  # client over 3
    client2, sender2 = limiters(100, 2)
    got = [await admit("socket.io", "x", f"10.0.0.{i}", "same", client2, sender2) for i in range(3)]
    assert got == [None, None, TOO_FAST]  # the sender over 2, whatever its addresses


@pytest.mark.asyncio
async def test_exactly_max_chars_passes() -> None:
    client, sender = limiters(5, 5)
    assert await admit("rest", "堵" * MAX_MESSAGE_CHARS, "c", "s", client, sender) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("  ", "\u200b"),  # empty reaches the assistant, which asks for text
    ("/EXTERNAL_ticket_update{}", "／EXTERNAL_ticket_update{}"),  # not one of our payloads: text
    ("/affirm", "/affirm"),  # one of our buttons
    ("井盖\x00丢了", "井盖 丢了"),
])
def test_text_for_rasa(raw: str, expected: str) -> None:
    assert text_for_rasa(raw, "rest:r1") == expected


def test_every_channel_tells_the_resident_the_same_words() -> None:
    from bot.channels import rest, socketio
    from bot.channels.wechat import replies, turns
    from bot.ops import cluster
    from bot.security import ratelimit

    assert rest.MSG_BUSY is socketio.MSG_BUSY is turns.MSG_BUSY is cluster.MSG_BUSY is common.MSG_BUSY
    assert rest.MSG_KEPT is socketio.MSG_KEPT is turns.MSG_KEPT is common.MSG_KEPT
    assert replies.MSG_TOO_FAST is ratelimit.MSG_TOO_FAST is TOO_FAST.message
    assert replies.EMPTY_MESSAGE is common.EMPTY_MESSAGE
    assert TOO_LONG.message == "内容过长（超过 20000 字），请分几次发送。"
    assert rest.REST_TOO_LONG == "内容过长（超过 20000 字），请分几次发送"  # REST's 413 as before


def test_common_imports_without_rasa_or_sanic() -> None:
    # the cluster's nginx configuration embeds MSG_BUSY: building it must not load Rasa
    code = "import sys, bot.channels.common; print('rasa' in sys.modules, 'sanic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
