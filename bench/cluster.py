"""The production cluster under load: 1 and then 2 instances behind nginx.

    from bench.cluster import run_cluster_bench
    result = run_cluster_bench(residents=50, instances=(1, 2))

For each instance count a fresh cluster (bot/ops/cluster.py: n Rasa servers + n action servers
+ the web server behind nginx, production profile) is started on fresh PostgreSQL schemas
(ticket store, tracker store), a fresh Redis key prefix and RabbitMQ queue; N simulated
residents (bench/load.py) complete whole complaints at once through nginx; then the store is
checked (every confirmed complaint exactly once) and every conversation in the tracker store
(whole and in order). Returns, per instance count: p50/p95/p99 turn latency, turns/s,
tickets/s, errors, lost and duplicate tickets, conversations with tracker problems; plus
the throughput scaling from the first to the last count.

Services: QC_BENCH_PG_URL (default QC_TEST_PG_URL or postgresql://postgres@127.0.0.1:5432/test),
QC_BENCH_REDIS_URL (redis://127.0.0.1:6379/1), QC_BENCH_AMQP_URL (amqp://guest:guest@127.0.0.1:5672/).
`tiny=True` (2 residents, the given instance counts) is what tests/cluster/test_bench.py runs.
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

PG_URL = os.environ.get("QC_BENCH_PG_URL") or os.environ.get("QC_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("QC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
AMQP_URL = os.environ.get("QC_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _with_schema(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")


def _tracker_problems(tracker_url: str, outcomes) -> int:
    """Conversations whose stored events are not whole and in order (see the checks in
    tests/cluster/helpers.py: each user message once, each turn ended before the next)."""
    from sqlalchemy import create_engine, text

    from bot.security.identity import rest_sender

    bad = 0
    engine = create_engine(tracker_url, future=True)
    try:
        with engine.connect() as conn:
            for o in outcomes:
                rows = conn.execute(text("SELECT type_name, timestamp, action_name FROM events "
                                         "WHERE sender_id = :s ORDER BY id"), {"s": rest_sender(o.sender)}).all()
                users = sum(1 for r in rows if r.type_name == "user")
                stamps = [r.timestamp for r in rows]
                last_action, ok = None, users == o.turns and all(b >= a for a, b in zip(stamps, stamps[1:]))
                seen = False
                for r in rows:
                    if r.type_name == "user":
                        ok = ok and (not seen or last_action == "action_listen")
                        seen, last_action = True, None
                    elif r.type_name == "action":
                        last_action = r.action_name
                ok = ok and last_action == "action_listen"
                bad += not ok
    finally:
        engine.dispose()
    return bad


def _one(n: int, residents: int, work_dir: Path, model: str | None, log) -> dict:
    from sqlalchemy import create_engine

    from bench.load import check_tickets, pick_residents, run_residents
    from bot.ops.cluster import Cluster, RasaHttpParser

    tag = uuid.uuid4().hex[:8]
    tickets_schema, tracker_schema = f"qc_bench_tickets_{tag}", f"qc_bench_tracker_{tag}"
    admin = create_engine(PG_URL, future=True)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{tickets_schema}"')  # generated names
        conn.exec_driver_sql(f'CREATE SCHEMA "{tracker_schema}"')
    env = {
        "QC_PROFILE": "production",
        "QC_DATABASE_URL": _with_schema(PG_URL, tickets_schema),
        "QC_TRACKER_DB_URL": PG_URL.split("?")[0],
        "QC_TRACKER_DB_SCHEMA": tracker_schema,
        "QC_REDIS_URL": REDIS_URL,
        "QC_LOCK_PREFIX": f"qcbench{tag}",
        "QC_AMQP_URL": AMQP_URL,
        "QC_RASA_EVENTS_QUEUE": f"qc_bench_rasa_events_{tag}",
        "QC_EVENTS_EXCHANGE": f"qc.bench.events.{tag}",
        # every client here is 127.0.0.1 and Redis counts are shared by every run on this machine:
        # the per-client backstops are tested in tests/security, not here
        "QC_CLIENT_RATE_LIMIT": "1000000",
        "QC_LOGIN_CLIENT_LIMIT": "1000000",
    }
    cluster = Cluster(env=env, work_dir=work_dir / f"instances-{n}", instances=n, model=model)
    try:
        log(f"cluster bench: starting {n} instance(s)…")
        cluster.start()
        pool = pick_residents(RasaHttpParser(cluster.rasa_urls[0], cluster.api_token), residents + 2)
        asyncio.run(run_residents(cluster.proxy_url, pool[:2], 2, f"cl{n}-warm"))  # warm every server a little
        log(f"cluster bench: {residents} residents through nginx, {n} instance(s)…")
        run = asyncio.run(run_residents(cluster.proxy_url, pool[2:], residents, f"cl{n}"))
        summary = run.summary()
        check = check_tickets(env["QC_DATABASE_URL"], run.outcomes)
        tracker_bad = _tracker_problems(_with_schema(PG_URL.split("?")[0], tracker_schema), run.outcomes)
    finally:
        cluster.stop()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{tickets_schema}" CASCADE')
            conn.exec_driver_sql(f'DROP SCHEMA "{tracker_schema}" CASCADE')
        admin.dispose()
        _cleanup_amqp(env["QC_RASA_EVENTS_QUEUE"], env["QC_EVENTS_EXCHANGE"])
    return {
        "instances": n, "residents": residents,
        **{k: summary[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "turns", "wall_s", "turns_per_s",
                                   "tickets_per_s", "tickets", "errors", "error_samples")},
        "lost": check["lost"], "duplicates": check["duplicates"], "number_mismatch": check["number_mismatch"],
        "tracker_problems": tracker_bad,
    }


def _cleanup_amqp(queue: str, exchange: str) -> None:
    import aio_pika

    async def go() -> None:
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
        async with conn:
            ch = await conn.channel()
            await ch.queue_delete(queue)
            await ch.exchange_delete(exchange)

    try:
        asyncio.run(go())
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def run_cluster_bench(residents: int = 50, instances: Iterable[int] = (1, 2), tiny: bool = False,
                      model: str | None = None, work_dir: Path | None = None, log=print) -> dict:
    """{"runs": [per instance count], "scaling": tickets/s of the last count ÷ the first}."""
    from bot.nlu.explain import latest_model

    if tiny:
        residents = 2
    model = model or str(latest_model())
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="qc-cluster-bench-"))
    runs = [_one(n, residents, work_dir, model, log) for n in instances]
    first, last = runs[0]["tickets_per_s"], runs[-1]["tickets_per_s"]
    result = {"runs": runs, "scaling": (last / first) if first else float("nan"), "work_dir": str(work_dir)}
    for r in runs:
        log(f"  {r['instances']} instance(s): p50 {r['p50_ms']:.0f} ms  p95 {r['p95_ms']:.0f} ms  "
            f"p99 {r['p99_ms']:.0f} ms  {r['turns_per_s']:.2f} turns/s  {r['tickets_per_s']:.2f} tickets/s  "
            f"errors {r['errors']}  lost {r['lost']}  duplicates {r['duplicates']}  "
            f"tracker problems {r['tracker_problems']}")
    log(f"  throughput scaling {runs[0]['instances']}→{runs[-1]['instances']} instances: {result['scaling']:.2f}×")
    return result


def update_report(out: Path, cluster: dict, commit: str, now: str | None = None) -> dict:
    """Put a cluster-only run into OUT/results.json and rewrite OUT/report.md: the report
    then says that its cluster rows were measured later than the rest, at which commit."""
    from datetime import datetime, timezone

    from bench.report import write_report

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    cluster = dict(cluster)
    cluster.pop("work_dir", None)
    cluster["remeasured"] = {"at": now or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
                             "load_avg": [round(x, 2) for x in os.getloadavg()]}
    results["cluster"] = cluster
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    write_report(results, out / "report.md")
    return results


def main(argv: list | None = None) -> int:
    """python -m bench.cluster [residents] [--update OUT]: the cluster part of `make bench`
    alone (e.g. after a change to the production profile); --update writes it into OUT's
    results.json and report.md, marked as measured later."""
    import argparse
    import subprocess

    ap = argparse.ArgumentParser(prog="python -m bench.cluster")
    ap.add_argument("residents", nargs="?", type=int, default=50)
    ap.add_argument("--update", type=Path, help="bench results folder to update (e.g. bench/results)")
    args = ap.parse_args(argv)
    result = run_cluster_bench(args.residents)
    if args.update:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1]).stdout.strip() or "unknown"
        update_report(args.update, result, commit)
    else:
        print(json.dumps(result, ensure_ascii=False, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
