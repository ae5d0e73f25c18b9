"""The WeChat channel under load: the share of messages answered within WeChat's 5 seconds.

WeChat drops a request after 5 s (and retries). A message counts as answered in time when
the passive reply carried the answer, or — when the channel said "success" because the bot
was slower than its passive budget — when the customer-service message reached the WeChat
API stand-in within 5 s of the post. Requests are signed and encrypted as WeChat does
(safe mode), by the tests' independent client (tests/wechat/wxclient.py).

  measure(webhook, standin, …)  N senders (default 20) at once against a running channel
  run(senders=20, …)            the stand-in + the real Rasa and action servers with the
                                channel enabled (fresh SQLite store), measure, stop
  python -m bench.wechat        run() and print the result as JSON

A benchmark reports, it does not assert.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.wechat.standin import WeChatStandIn
from tests.wechat.wxclient import WeChatServer, location_msg, text_msg

WINDOW = 5.0
TOKEN = "bench-token"
APPID = "wxbench000000000"
SECRET = "bench-secret"
AES_KEY = "QmVuY2hCZW5jaEJlbmNoQmVuY2hCZW5jaEJlbmNoQmU"  # 43 characters, a bench-only key

Turn = Callable[[str, int], bytes]

COMPLAINTS = ["楼下天天有人遛狗不牵绳", "单元门上贴满了小广告", "下水道堵了 污水都漫到路上了", "垃圾桶满了好几天没人清运",
              "暖气不热 屋里才十五度", "工地半夜两点还在施工", "路灯坏了一个多月了", "物业不作为 电梯坏了半个月没人修"]

# Each sender: a complaint (the bot asks where), then a location message (the bot asks for a photo).
DEFAULT_TURNS: Sequence[Turn] = (
    lambda openid, i: text_msg(openid, COMPLAINTS[i % len(COMPLAINTS)]),
    lambda openid, i: location_msg(openid, 40.8415, 111.7498, "内蒙古自治区呼和浩特市新城区海拉尔东路街道公主府社区"),
)


async def measure(webhook: str, standin: WeChatStandIn, token: str = TOKEN, appid: str = APPID,
                  aes_key: str = AES_KEY, senders: int = 20, turns: Sequence[Turn] = DEFAULT_TURNS,
                  encrypted: bool = True) -> dict:
    wx = WeChatServer(webhook, token, appid, aes_key if encrypted else "")
    run_id = uuid.uuid4().hex[:8]

    http_times: list[float] = []  # how long WeChat would have waited for our HTTP answer

    async def sender(i: int) -> list[tuple[str, float | None]]:
        openid = f"oBench{run_id}{i:04d}"
        out: list[tuple[str, float | None]] = []
        for turn in turns:
            before = len(standin.sent(openid))
            started = time.monotonic()
            try:
                reply = await wx.post(turn(openid, i), encrypted=encrypted)
            except Exception:  # noqa: BLE001 - a failed request is a result here
                out.append(("error", None))
                continue
            http_times.append(reply.elapsed)
            if reply.status != 200:
                out.append(("error", None))
            elif reply.content:
                out.append(("passive", reply.elapsed))
            elif await standin.wait_for(lambda: len(standin.sent(openid)) > before, timeout=WINDOW * 6):
                arrived = [c.at for c in standin.calls_to("/cgi-bin/message/custom/send")
                           if (c.json or {}).get("touser") == openid and not (c.json or {}).get("_failed")]
                out.append(("async", arrived[before] - started))
            else:
                out.append(("lost", None))
        return out

    started = time.monotonic()
    results = [r for rs in await asyncio.gather(*(sender(i) for i in range(senders))) for r in rs]
    latencies = sorted(t for _, t in results if t is not None)
    in_time = sum(1 for _, t in results if t is not None and t <= WINDOW)
    kinds = {k: sum(1 for kind, _ in results if kind == k) for k in ("passive", "async", "lost", "error")}

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    return {
        "senders": senders,
        "messages": len(results),
        "within_5s": in_time,
        "share_within_5s": round(in_time / len(results), 4) if results else 0.0,
        **kinds,
        "latency_p50_s": pct(0.5),
        "latency_p95_s": pct(0.95),
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
        "latency_mean_s": round(statistics.mean(latencies), 3) if latencies else None,
        # the channel's own promise: WeChat never waits 5 s (no retries, no "暂时无法提供服务")
        "http_within_5s": sum(1 for t in http_times if t <= WINDOW),
        "http_max_s": round(max(http_times), 3) if http_times else None,
        "wall_s": round(time.monotonic() - started, 3),
        "token_calls": len(standin.token_calls),
    }


def run(senders: int = 20, model: str | None = None, work: Path | None = None) -> dict:
    """Start the stand-in and the real servers with the WeChat channel on, measure, stop."""
    from bot.nlu.explain import latest_model
    from bot.storage.engine import init_db, make_engine
    from tests.wechat.conftest import free_port
    from tests.wechat.stack import start_wechat_stack

    work = work or Path(tempfile.mkdtemp(prefix="qc-bench-wechat-"))
    work.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{work / 'tickets.db'}"
    init_db(make_engine(db_url))
    standin_port = free_port()
    stack = start_wechat_stack(work, free_port(), free_port(), str(model or latest_model()), env={
        "QC_DATABASE_URL": db_url, "QC_UPLOAD_DIR": str(work / "uploads"),
        "QC_WECHAT_TOKEN": TOKEN, "QC_WECHAT_AES_KEY": AES_KEY, "QC_WECHAT_APPID": APPID,
        "QC_WECHAT_SECRET": SECRET, "QC_WECHAT_API_BASE": f"http://127.0.0.1:{standin_port}",
    }, log_name="bench")

    async def go() -> dict:
        standin = WeChatStandIn(APPID, SECRET)
        await standin.start(port=standin_port)
        try:
            return await measure(stack.webhook, standin, senders=senders)
        finally:
            await standin.close()

    try:
        result = asyncio.run(go())
    finally:
        stack.stop()
    result["logs"] = str(work)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=20)
    args = parser.parse_args(argv)
    print(json.dumps(run(senders=args.senders), ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
