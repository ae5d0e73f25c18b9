"""bench/wechat.py's measure() works (counts, not timings: a benchmark reports, the
lead wires it into `make bench`)."""
from __future__ import annotations

import pytest

from bench.wechat import measure
from tests.wechat.conftest import AES_KEY, APPID, TOKEN

pytestmark = pytest.mark.asyncio


async def test_measure_counts_passive_and_async_answers(h):
    fast = await h.channel()
    result = await measure(fast.url, h.standin, TOKEN, APPID, AES_KEY, senders=20)
    assert result["messages"] == 40 and result["passive"] + result["async"] == 40
    assert result["lost"] == 0 and result["error"] == 0 and 0 <= result["share_within_5s"] <= 1

    h.bot.delay = 0.6
    slow = await h.channel(passive_budget=0.3)
    result = await measure(slow.url, h.standin, TOKEN, APPID, AES_KEY, senders=5)
    assert result["async"] == 10 and result["passive"] == 0 and result["lost"] == 0
