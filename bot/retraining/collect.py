"""Collecting from conversations (called by the actions): the write runs in the
background with its own short timeout, so the resident's turn never waits for the
inbox and a failed write costs the inbox one sample, never the resident a reply.
The same holds for the category a resident picks after an unsure turn (collect_choice)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bot.paths import REPO_ROOT
from bot.retraining.inbox import Sample, record, record_choice, sample_from_parse
from bot.text import mask_personal_data

log = logging.getLogger(__name__)

CONFIG = REPO_ROOT / "config.yml"  # the pipeline the served model was trained with

COLLECT_TIMEOUT = float(os.environ.get("QC_COLLECT_TIMEOUT", "3"))
_pending: set[asyncio.Task] = set()


def fallback_threshold() -> float:
    """The FallbackClassifier's threshold in config.yml (one source: the model's)."""
    return _threshold_in(CONFIG)


@functools.cache
def _threshold_in(config: Path) -> float:
    import yaml

    pipeline = yaml.safe_load(Path(config).read_text(encoding="utf-8")).get("pipeline") or []
    found = [step for step in pipeline if str(step.get("name", "")).endswith("FallbackClassifier")]
    if len(found) != 1 or "threshold" not in found[0]:
        raise ValueError(f"{config}: expected one FallbackClassifier with a threshold")
    return float(found[0]["threshold"])


def fallback_source(ranking: list[Mapping[str, Any]]) -> str:
    """"fallback" when the best intent was under the threshold, "unsure" when the top two were close."""
    ranked = [r for r in ranking if r.get("name") != "nlu_fallback"]
    top = float(ranked[0].get("confidence") or 0) if ranked else 0.0
    return "unsure" if top >= fallback_threshold() else "fallback"


def _in_transaction(write: Callable[..., int | None], *args: Any) -> int | None:
    from bot.ops import runtime

    with runtime.engine().begin() as conn:
        return write(conn, *args)


async def _guarded(what: str, about: str, write: Callable[..., int | None], *args: Any) -> None:
    try:
        await asyncio.wait_for(asyncio.to_thread(_in_transaction, write, *args), COLLECT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - the inbox is best effort; the conversation goes on
        log.warning("review inbox %s failed (%s) for %s", what, type(exc).__name__, mask_personal_data(about)[:40])


def _schedule(work: Coroutine[Any, Any, None]) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(work)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return task


def collect(sample: Sample) -> asyncio.Task:
    """Schedule the write and return at once."""
    return _schedule(_guarded("write", sample.text or "", _record_sample, sample))


def _record_sample(conn: Any, sample: Sample) -> int | None:
    return record(conn, sample, datetime.now(timezone.utc))


def collect_turn(source: str, text: str, ranking: list[Mapping[str, Any]], sender_id: str,
                 message_id: str | None, correction: dict[str, Any] | None = None) -> asyncio.Task | None:
    if not text or text.startswith("/"):
        return None
    key = f"{source}:{sender_id}:{message_id or hash(text)}"
    return collect(sample_from_parse(source, text, ranking, key, correction))


def collect_choice(sender_id: str, intent: str, text: str | None = None) -> asyncio.Task | None:
    """The category the resident picked from the buttons offered after an unsure turn:
    attached (in the background) to that conversation's newest pending inbox item,
    the one of `text` (the message the buttons were offered for) when given."""
    if not sender_id or not intent:
        return None
    return _schedule(_guarded("choice", sender_id, _record_choice, sender_id, intent, text))


def _record_choice(conn: Any, sender_id: str, intent: str, text: str | None) -> int | None:
    return record_choice(conn, sender_id, intent, datetime.now(timezone.utc), text=text)
