"""Speed through the real servers over HTTP.

A served system is started the way it runs in production (bot.ops.serve.start_stack: the
action server and the Rasa server, HTTP API on with a token, a fresh SQLite ticket store),
then N simulated residents talk to it at once over the REST channel (aiohttp), each
completing a whole complaint. Every turn's latency is recorded; /model/parse is timed on
its own; the servers' resident set size is sampled (psutil, children included); at the end
the ticket store is checked: every confirmed complaint exactly once, under the number the
resident was given.

A resident answers what it is asked (photo → /deny, phone → /deny, summary → /affirm, …),
so a bot that takes another path still completes; the turns beyond the scripted four are
counted (`extra turns`). Anything else — an HTTP error, a timeout, a reply the resident does
not understand, "submit failed", no ticket after 12 turns — is an error.
"""
from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TICKET_RE = re.compile(r"QC-\d{6}-\d{4}")
SCRIPTED_TURNS = 4  # complaint with place → photo? /deny → phone? /deny → summary /affirm → ticket
MAX_TURNS = 12

# One short complaint per category; each resident pairs one with its own community, so no
# two complaints share (category, community) and none is merged (并单) into another.
COMPLAINTS: dict[str, str] = {
    "dog": "楼下天天有人遛狗不牵绳 孩子都不敢下楼",
    "illegal_ads": "单元门上贴满了小广告 撕了又贴",
    "drainage": "小区下水道堵了好几天 一股臭味",
    "sanitation": "垃圾桶满了好几天没人清运 苍蝇乱飞",
    "heating": "暖气不热 屋里才十五度",
    "water_supply": "停水两天了也没通知 啥时候来水啊",
    "street_order": "路边摆摊的把人行道全占了 人都过不去",
    "noise": "工地半夜两点还在施工 吵得睡不着",
    "roads_lighting": "路灯坏了一个多月了 晚上黑乎乎的",
    "property": "物业不作为 电梯坏了半个月没人修",
    "market": "楼下超市卖过期食品 还不给退",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Resident:
    category: str
    community_code: str
    first: str  # the complaint, naming the place
    place: str  # what the resident answers when asked where


def candidate_residents() -> list[Resident]:
    """Communities whose short name (X社区) names exactly one unit, in gazetteer order,
    each with a complaint (categories in turn) and the district written before it."""
    from bot.reference.gazetteer import default_gazetteer

    g = default_gazetteer()
    cats = list(COMPLAINTS)
    out = []
    for p in g.places.values():
        if p.level != "community" or not p.name.endswith("社区居委会"):
            continue
        alias = p.name[: -len("居委会")]
        if len(alias) < 4 or len(g.candidates(alias)) != 1:
            continue
        place = g.name_of(p.district_code) + alias
        cat = cats[len(out) % len(cats)]
        out.append(Resident(cat, p.code, f"{place} {COMPLAINTS[cat]}", place))
    return out


def pick_residents(parser, n: int) -> list[Resident]:
    """The first n candidates our own model reads as intended (right category, the place
    resolved to that community): the scripted path is the one ours should take."""
    from bot.nlu.explain import explain

    out = []
    for r in candidate_residents():
        e = explain(parser.parse(r.first))
        if e["category"] == r.category and e["location_status"] == "resolved" and e["community_code"] == r.community_code:
            out.append(r)
            if len(out) == n:
                return out
    raise RuntimeError(f"only {len(out)} usable residents, {n} needed")


# --- one resident ---------------------------------------------------------------------

def reply_kind(text: str) -> str:
    """What the bot's reply asks for (from the response texts in domain.yml)."""
    if TICKET_RE.search(text) and ("已为您登记" in text or "并入" in text or "已经提交过" in text):
        return "filed"
    if "没有提交成功" in text:
        return "submit_failed"
    if "请确认您的诉求" in text or "确认提交" in text:
        return "summary"
    if "照片" in text:
        return "photo"
    if "联系电话" in text:
        return "phone"
    if "保密吗" in text:
        return "confidential"
    if "发生在哪里" in text or "属于哪个街道" in text or "多个同名" in text:
        return "location"
    if "具体描述" in text:
        return "description"
    if "哪一类问题" in text or "是下面哪一个" in text:
        return "category"
    if "没太明白" in text or "要反映什么问题" in text:
        return "not_understood"
    return "unexpected"


@dataclass
class Outcome:
    sender: str
    turns: int = 0
    latencies: list[float] = field(default_factory=list)
    confirmed: bool = False  # the resident confirmed the summary
    ticket: str | None = None
    error: str | None = None
    submit_failures: int = 0


async def converse(session, base_url: str, resident: Resident, sender: str) -> Outcome:
    import aiohttp

    out = Outcome(sender)
    url = f"{base_url}/webhooks/rest/webhook"
    message, asked_where = resident.first, 0
    while out.turns < MAX_TURNS:
        t0 = time.perf_counter()
        try:
            async with session.post(url, json={"sender": sender, "message": message}) as r:
                body = await r.json(content_type=None) if r.status == 200 else await r.text()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            out.turns += 1
            out.error = f"{type(exc).__name__}: {exc}"[:200]
            return out
        out.latencies.append(time.perf_counter() - t0)
        out.turns += 1
        if message == "/affirm":
            out.confirmed = True
        if status != 200:
            out.error = f"HTTP {status}: {str(body)[:160]}"
            return out
        text = "\n".join(m.get("text") or "" for m in body if isinstance(m, dict))
        kind = reply_kind(text)
        if kind == "filed":
            out.ticket = TICKET_RE.search(text).group(0)
            return out
        if kind == "submit_failed":
            out.submit_failures += 1
            message = "提交"
        elif kind in ("photo", "phone", "confidential"):
            message = "/deny"
        elif kind == "summary":
            message = "/affirm"
        elif kind == "location":
            asked_where += 1  # typed first; asked again → click, as a resident would
            message = resident.place if asked_where == 1 else f'/inform{{"community":"{resident.community_code}"}}'
        elif kind in ("description", "not_understood"):
            message = resident.first
        elif kind == "category":
            message = f"/{resident.category}"
        else:
            out.error = f"unexpected reply: {text[:160]!r}"
            return out
    out.error = f"no ticket after {MAX_TURNS} turns"
    return out


# --- N residents at once -----------------------------------------------------------------

@dataclass
class LoadRun:
    concurrency: int
    residents: int
    wall_seconds: float
    outcomes: list[Outcome]

    @property
    def latencies(self) -> list[float]:
        return [x for o in self.outcomes for x in o.latencies]

    @property
    def turns(self) -> int:
        return sum(o.turns for o in self.outcomes)

    @property
    def tickets(self) -> int:
        return sum(1 for o in self.outcomes if o.ticket)

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.error) + sum(o.submit_failures for o in self.outcomes)

    def summary(self) -> dict:
        lat = self.latencies
        return {
            "concurrency": self.concurrency,
            "residents": self.residents,
            "turns": self.turns,
            "extra_turns": self.turns - SCRIPTED_TURNS * self.residents,
            "wall_s": self.wall_seconds,
            "p50_ms": percentile(lat, 50) * 1000,
            "p95_ms": percentile(lat, 95) * 1000,
            "p99_ms": percentile(lat, 99) * 1000,
            "max_ms": (max(lat) if lat else float("nan")) * 1000,
            "turns_per_s": self.turns / self.wall_seconds if self.wall_seconds else 0.0,
            "tickets_per_s": self.tickets / self.wall_seconds if self.wall_seconds else 0.0,
            "tickets": self.tickets,
            "errors": self.errors,
            "error_samples": sorted({o.error for o in self.outcomes if o.error})[:5],
        }


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


async def run_residents(base_url: str, residents: Sequence[Resident], concurrency: int, tag: str) -> LoadRun:
    """`concurrency` workers; each completes its share of the residents one after another,
    so `concurrency` complaints are under way at any moment."""
    import aiohttp

    shares = [list(residents[i::concurrency]) for i in range(concurrency)]
    outcomes: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def worker(share: list[Resident]):
            for r in share:
                outcomes.append(await converse(session, base_url, r, f"bench-{tag}-{uuid.uuid4().hex[:12]}"))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(s) for s in shares))
        wall = time.perf_counter() - t0
    return LoadRun(concurrency, len(residents), wall, outcomes)


async def time_parse(base_url: str, token: str, texts: Sequence[str]) -> dict:
    """POST /model/parse for each text, one after another (NLU alone, no dialogue)."""
    import aiohttp

    lat, errors = [], 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for t in texts:
            t0 = time.perf_counter()
            try:
                async with session.post(f"{base_url}/model/parse", params={"token": token}, json={"text": t}) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            if ok:
                lat.append(time.perf_counter() - t0)
            else:
                errors += 1
    return {"n": len(texts), "errors": errors, "p50_ms": percentile(lat, 50) * 1000,
            "p95_ms": percentile(lat, 95) * 1000, "p99_ms": percentile(lat, 99) * 1000}


# --- the servers -----------------------------------------------------------------------------

class RssSampler:
    """Peak resident set size of each server process and its children, sampled."""

    def __init__(self, procs: dict[str, int], interval: float = 0.2):
        self.pids = procs
        self.interval = interval
        self.peak_mb: dict[str, float] = {name: 0.0 for name in procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        for name, pid in self.pids.items():
            try:
                p = psutil.Process(pid)
                rss = p.memory_info().rss
                for c in p.children(recursive=True):
                    try:
                        rss += c.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                continue
            self.peak_mb[name] = max(self.peak_mb[name], rss / 2**20)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()


def check_tickets(db_url: str, outcomes: Sequence[Outcome]) -> dict:
    """Every confirmed complaint exactly once in the store, under the number returned."""
    from sqlalchemy import select

    from bot.security.identity import REST_PREFIX
    from bot.storage.engine import make_engine
    from bot.storage.tables import ticket_reports, tickets

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(ticket_reports.c.sender_id, tickets.c.number)
                .select_from(ticket_reports.join(tickets, tickets.c.id == ticket_reports.c.ticket_id))
            ).all()
            n_tickets = len(conn.execute(select(tickets.c.id)).all())
    finally:
        engine.dispose()
    stored: dict[str, list[str]] = {}
    for sender, number in rows:  # REST conversations are stored as "rest:<sender>" (bot/security/identity.py)
        stored.setdefault(sender.removeprefix(REST_PREFIX), []).append(number)
    confirmed = [o for o in outcomes if o.confirmed]
    lost = [o.sender for o in confirmed if not stored.get(o.sender)]
    duplicates = sum(max(0, len(v) - 1) for v in stored.values())
    mismatched = [o.sender for o in confirmed if stored.get(o.sender) and o.ticket not in stored[o.sender]]
    unconfirmed_stored = [s for s in stored if s not in {o.sender for o in confirmed}]
    returned = {o.ticket for o in confirmed if o.ticket}
    return {
        "confirmed": len(confirmed),
        "reports_stored": len(rows),
        "tickets_stored": n_tickets,
        "lost": len(lost),
        "duplicates": duplicates,
        "number_mismatch": len(mismatched),
        "stored_without_confirmation": len(unconfirmed_stored),
        "numbers_match": returned == {n for v in stored.values() for n in v},
    }


@dataclass
class ServedResult:
    system: str
    runs: list[dict]
    parse: dict
    rss_mb: dict[str, float]
    tickets: dict
    latencies: dict[int, list[float]]
    startup_s: float


def bench_served(system: str, model: Path, residents: Sequence[Resident], levels: Sequence[tuple[int, int]],
                 parse_texts: Sequence[str], work_dir: Path, warmup: int = 2, log=print) -> ServedResult:
    """Start the stack on `model`, warm it up, run every (concurrency, residents per worker)
    level, time /model/parse, stop the stack, check the store."""
    from bot.ops.serve import start_stack, stop_stack
    from bot.storage.engine import make_engine

    try:  # schema + queues + routing rules, as `python -m bot serve` and the e2e tests prepare it
        from bot.services.setup import prepare_store
    except ImportError:
        from bot.storage.engine import init_db as prepare_store

    work_dir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{work_dir / 'tickets.db'}"
    engine = make_engine(db_url)
    prepare_store(engine)
    engine.dispose()
    token = "bench-" + uuid.uuid4().hex
    rasa_port, actions_port = free_port(), free_port()
    while actions_port == rasa_port:
        actions_port = free_port()
    t0 = time.perf_counter()
    # ours as `make run` serves it (SQLite tracker store); the stock peer with Rasa's default in-memory one
    procs = start_stack(rasa_port, actions_port, model=str(model), log_dir=work_dir, api_token=token,
                        env={"QC_DATABASE_URL": db_url, "QC_CLIENT_RATE_LIMIT": "1000000"},  # one client: us
                        sqlite_trackers=system != "stock")
    startup = time.perf_counter() - t0
    base = f"http://127.0.0.1:{rasa_port}"
    outcomes: list[Outcome] = []
    runs, latencies = [], {}
    try:
        with RssSampler({"rasa": procs[1].pid, "actions": procs[0].pid}) as rss:
            pool = list(residents)
            warm = asyncio.run(run_residents(base, pool[:warmup], 1, f"{system}-warmup"))
            outcomes += warm.outcomes
            asyncio.run(time_parse(base, token, parse_texts[:10]))  # warm the parse path too
            pool = pool[warmup:]
            for concurrency, per_worker in levels:
                n = concurrency * per_worker
                batch, pool = pool[:n], pool[n:]
                if len(batch) < n:
                    raise RuntimeError("not enough residents for the load levels")
                run = asyncio.run(run_residents(base, batch, concurrency, f"{system}-n{concurrency}"))
                outcomes += run.outcomes
                s = run.summary()
                runs.append(s)
                latencies[concurrency] = run.latencies
                log(f"  {system} N={concurrency}: {s['turns']} turns in {s['wall_s']:.1f} s, p50 {s['p50_ms']:.0f} ms, "
                    f"p95 {s['p95_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms, {s['turns_per_s']:.1f} turns/s, "
                    f"errors {s['errors']}")
            parse = asyncio.run(time_parse(base, token, parse_texts))
            log(f"  {system} /model/parse: p50 {parse['p50_ms']:.1f} ms, p95 {parse['p95_ms']:.1f} ms")
    finally:
        stop_stack(procs)
    tickets = check_tickets(db_url, outcomes)
    log(f"  {system} store: {tickets}")
    return ServedResult(system, runs, parse, dict(rss.peak_mb), tickets, latencies, startup)


def latency_plot(concurrency: int, by_system: dict[str, list[float]], path: Path, labels: dict[str, str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    every = np.concatenate([np.asarray(v, dtype=float) * 1000 for v in by_system.values() if v] or [np.zeros(1)])
    bins = np.histogram_bin_edges(every, bins=40)  # one set of bins for every system
    for system, lat in by_system.items():
        if not lat:
            continue
        ms = np.sort(np.asarray(lat) * 1000)
        ax1.hist(ms, bins=bins, alpha=0.55, label=f"{labels.get(system, system)} (n={len(ms)})")
        ax2.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=labels.get(system, system))
        for q, style in ((50, ":"), (95, "--"), (99, "-.")):
            ax2.axvline(np.percentile(ms, q), linestyle=style, linewidth=0.8,
                        color=ax2.get_lines()[-1].get_color())
    ax1.set_xlabel("full-turn latency (ms)")
    ax1.set_ylabel("turns")
    ax1.legend(fontsize=8)
    ax2.set_xscale("log")
    ax2.set_xlabel("full-turn latency (ms, log)")
    ax2.set_ylabel("share of turns at or below")
    ax2.set_title("dotted p50, dashed p95, dash-dot p99", fontsize=9)
    ax2.legend(fontsize=8)
    fig.suptitle(f"{concurrency} concurrent resident(s): latency of one turn over HTTP")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
