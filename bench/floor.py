"""What Rasa itself costs per turn on this machine: the smallest bot Rasa can serve.

Two intents, one response each, one rule each (RulePolicy), WhitespaceTokenizer +
CountVectorsFeaturizer + LogisticRegressionClassifier, no custom action, Rasa's default
in-memory tracker store, one `rasa run`, Rasa as shipped. The same closed loop as the
residents (each simulated user sends the next message when the reply is in; 4 turns a
conversation, a new conversation per user after that) at the same concurrency levels.
Nothing a complaint bot does is cheaper than this, so its latency is the floor any
Rasa 3.6 assistant starts from on the machine — the yardstick for the latency targets.
"""
from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from bench.load import free_port, percentile
from bench.training import RASA, rasa_env

TURNS = 4  # as the scripted complaint
MESSAGES = ("hello", "bye")

FILES = {
    "config.yml": """recipe: default.v1
language: en
assistant_id: floor
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: LogisticRegressionClassifier
policies:
  - name: RulePolicy
""",
    "domain.yml": """version: "3.1"
intents: [greet, bye]
responses:
  utter_greet:
  - text: "您好"
  utter_bye:
  - text: "再见"
""",
    "credentials.yml": "rest:\n",
    "data/nlu.yml": """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello
    - hi
    - good morning
- intent: bye
  examples: |
    - bye
    - goodbye
    - see you
""",
    "data/rules.yml": """version: "3.1"
rules:
- rule: greet
  steps:
  - intent: greet
  - action: utter_greet
- rule: bye
  steps:
  - intent: bye
  - action: utter_bye
""",
}


def _write_project(root: Path) -> None:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


async def _load(base_url: str, concurrency: int, per_worker: int) -> tuple[list[float], int, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0

    async def worker(session) -> None:
        nonlocal errors
        for _ in range(per_worker):
            sender = f"floor-{uuid.uuid4().hex[:12]}"
            for i in range(TURNS):
                t0 = time.perf_counter()
                try:
                    async with session.post(f"{base_url}/webhooks/rest/webhook",
                                            json={"sender": sender, "message": MESSAGES[i % 2]}) as r:
                        body = await r.json(content_type=None)
                        ok = r.status == 200 and bool(body)
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                    ok = False
                if not ok:
                    errors += 1
                    break
                latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, errors, wall


def run_floor(levels: Sequence[tuple[int, int]], work_dir: Path, log=print) -> dict:
    """Train the minimal bot, serve it, run every level; {train_s, runs: [...]}."""
    from bot.ops.serve import stop_stack, wait_http

    work_dir.mkdir(parents=True, exist_ok=True)
    _write_project(work_dir)
    env = rasa_env({"RASA_CACHE_DIRECTORY": str(work_dir / ".cache")})
    env.pop("PYTHONPATH", None)  # Rasa as shipped: nothing of ours importable
    t0 = time.perf_counter()
    with open(work_dir / "train.log", "wb") as out:
        subprocess.run([RASA, "train", "--fixed-model-name", "floor", "--quiet"], cwd=work_dir, env=env,
                       stdout=out, stderr=subprocess.STDOUT, check=True, timeout=900)
    train_s = time.perf_counter() - t0
    port = free_port()
    with open(work_dir / "rasa.log", "ab") as out:
        proc = subprocess.Popen([RASA, "run", "-i", "127.0.0.1", "--port", str(port), "-m", "models/floor.tar.gz"],
                                cwd=work_dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    runs = []
    try:
        if not wait_http(f"http://127.0.0.1:{port}/", 180, proc):
            raise RuntimeError(f"the minimal Rasa bot did not start; see {work_dir / 'rasa.log'}")
        base = f"http://127.0.0.1:{port}"
        asyncio.run(_load(base, 1, 2))  # warm-up, not timed
        for concurrency, per_worker in levels:
            lat, errors, wall = asyncio.run(_load(base, concurrency, per_worker))
            run = {"concurrency": concurrency, "turns": len(lat), "errors": errors, "wall_s": wall,
                   "p50_ms": percentile(lat, 50) * 1000, "p95_ms": percentile(lat, 95) * 1000,
                   "p99_ms": percentile(lat, 99) * 1000, "turns_per_s": len(lat) / wall if wall else 0.0}
            runs.append(run)
            log(f"  floor N={concurrency}: {run['turns']} turns, p50 {run['p50_ms']:.0f} ms, p95 {run['p95_ms']:.0f} ms, "
                f"{run['turns_per_s']:.1f} turns/s, errors {errors}")
    finally:
        stop_stack([proc])
    return {"train_s": train_s, "runs": runs}
