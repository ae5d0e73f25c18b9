"""Admin pages of the retraining loop (admins only: any other role gets 404).

    GET  /console/retraining                     the review inbox (groups, most frequent first)
    POST /console/retraining/items/{id}/accept   intent (+ a place span) → data/nlu
    POST /console/retraining/items/{id}/reject   junk
    POST /console/retraining/places              a new place name → mapping table + jieba dictionary
    POST /console/retraining/train               start a training run (one at a time)
    GET  /console/retraining/models              registry, the run in progress (bar + log)
    GET  /console/retraining/models/{id}         metrics against the active model, activate
    GET  /console/retraining/models/{id}/confusion.png
    POST /console/retraining/models/{id}/activate, POST /console/retraining/rollback
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.console.http import CONSOLE, PREFIX, form_text, render, require
from bot.console.names import category_label
from bot.domain.clock import now_utc
from bot.domain.model import CATEGORIES
from bot.paths import REPO_ROOT
from bot.retraining import inbox, nludata, trainer
from bot.retraining.trainer import RetrainError, RetrainSettings, TrainingBusy
from bot.web.keys import SETTINGS

RETRAIN_SETTINGS = web.AppKey("retrain_settings", RetrainSettings)  # set before start to override (tests)
BASE = f"{PREFIX}/retraining"
SOURCE_LABELS = {"fallback": "没把握", "unsure": "两类相近", "deny": "居民否认", "ticket_category": "派单纠正类别",
                 "ticket_location": "派单纠正地点", "knowledge": "坐席加入知识库"}
STATUS_LABELS = {"queued": "排队", "validating": "校验数据", "training": "训练中", "evaluating": "评测中",
                 "candidate": "候选", "failed": "失败", "active": "使用中", "retired": "已停用"}


@lru_cache(maxsize=1)
def intent_choices() -> list[tuple[str, str]]:
    import yaml

    domain = yaml.safe_load((REPO_ROOT / "domain.yml").read_text(encoding="utf-8"))
    names = [i if isinstance(i, str) else next(iter(i)) for i in domain.get("intents") or []]
    names = [n for n in names if not n.startswith("EXTERNAL_") and n != "nlu_fallback"]
    cats = [n for n in names if n in CATEGORIES]
    rest = sorted(n for n in names if n not in CATEGORIES)
    return [(n, f"{category_label(n)}（{n}）") for n in cats] + [(n, n) for n in rest]


def settings_of(request: web.Request) -> RetrainSettings:
    app = request.app
    if RETRAIN_SETTINGS not in app:
        base = RetrainSettings.from_env()
        app[RETRAIN_SETTINGS] = RetrainSettings(**{
            **base.__dict__, "rasa_url": app[SETTINGS].rasa_url,
            "rasa_token": app[CONSOLE].config.rasa_token or base.rasa_token,
            "database_url": app[SETTINGS].database_url or base.database_url,
        })
    return app[RETRAIN_SETTINGS]


def _item_id(request: web.Request, key: str = "item_id") -> int:
    raw = request.match_info[key]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


# --- inbox ---------------------------------------------------------------------------------


def _inbox(engine: Any, status: str) -> tuple[list[inbox.InboxGroup], dict[str, int]]:
    from sqlalchemy import func, select

    from bot.retraining.tables import review_items

    with engine.connect() as conn:
        counts = dict(conn.execute(select(review_items.c.status, func.count()).group_by(review_items.c.status)).all())
        return inbox.inbox_groups(conn, status), counts


async def inbox_page(request: web.Request, status: int = 200, error: str = "", done: str = "",
                     review: dict[str, Any] | None = None, shown: str = "") -> web.Response:
    require(request, "admin")
    shown = shown or request.query.get("status") or "new"
    if shown not in ("new", "accepted", "rejected"):
        raise web.HTTPNotFound()
    console = request.app[CONSOLE]
    groups, counts = await asyncio.to_thread(_inbox, console.engine, shown)
    run = await asyncio.to_thread(trainer.running, console.engine)
    return await render(
        request, "retraining.html", status=status, groups=groups, counts=counts, shown_status=shown,
        intents=intent_choices(), sources=SOURCE_LABELS, entity_types=nludata.ENTITY_TYPES, error=error,
        done=done or {"accepted": "已采纳并写入训练数据。", "rejected": "已忽略。", "place": "地名已加入。", "undone": "已撤销采纳，这条回到待审核。",
                      "train": "训练已开始。"}.get(request.query.get("done", ""), ""),
        review=review or {}, run=run, title="模型训练 · 待审核",
    )


def _accept(engine: Any, settings: RetrainSettings, item_id: int, intent: str, mention: str, entity: str,
            confirm_snap: bool, who: str, add_word: bool = False) -> dict[str, Any]:
    """Returns {"warning": ..., "span": ...} when the span needs the admin's confirmation.
    add_word: the marked name goes into the jieba dictionary first, so it is one token."""
    item = None
    with engine.connect() as conn:
        item = inbox.get_item(conn, item_id)
    if item is None or item["status"] != "new":
        raise web.HTTPNotFound()
    if intent not in dict(intent_choices()):
        raise RetrainError("请选择正确的意图/类别")
    spans: list[nludata.Span] = []
    if mention.strip():
        if add_word:
            nludata.add_word(settings.data_dir, mention)
        span = nludata.find_span(item["text"], mention, entity, settings.data_dir / "dictionaries")
        if span.warning and not confirm_snap:
            return {"warning": span.warning, "item_id": item_id, "text": item["text"], "intent": intent,
                    "mention": mention.strip(), "entity": entity, "snapped": span.text,
                    "can_add_word": not add_word and entity == "place"
                                    and nludata.plausible_word(mention.strip())}
        spans.append(span)
    line = nludata.markup(item["text"], spans)
    path, written = nludata.add_examples(settings.data_dir / "nlu", intent, [line])  # atomic, deduplicated
    with engine.begin() as conn:
        inbox.review_group(conn, item_id, "accepted", who, now_utc(), intent, [s.as_json() for s in spans])
        # what an undo takes out again (nothing when the example was there already)
        inbox.set_written(conn, item_id, {"file": path.name, "lines": written} if path else {})
    return {}


def _undo(engine: Any, settings: RetrainSettings, item_id: int) -> None:
    """An accepted item back to the inbox, its example out of the training data — while no
    training run has started since it was accepted."""
    with engine.connect() as conn:
        item = inbox.get_item(conn, item_id)
    if item is None or item["status"] != "accepted":
        raise web.HTTPNotFound()
    since = [m for m in trainer.list_models(engine, 1000)
             if m["status"] != "failed" and m["created_at"] >= item["reviewed_at"]]
    if since:
        raise RetrainError(f"这条已用于训练模型 #{since[-1]['id']}，不能撤销采纳；"
                           "请改在训练数据里修改后重新训练。")
    written = (item["correction"] or {}).get("written") or {}
    if written.get("lines"):
        nludata.remove_examples(settings.data_dir / "nlu", written["file"], written["lines"])
    with engine.begin() as conn:
        inbox.unreview_group(conn, item_id)


async def item_accept(request: web.Request) -> web.StreamResponse:
    p = require(request, "admin")
    form = request["form"]
    item_id = _item_id(request)
    try:
        result = await asyncio.to_thread(
            _accept, request.app[CONSOLE].engine, settings_of(request), item_id, form_text(form, "intent"),
            form_text(form, "mention")[:60], str(form.get("entity") or "place"),
            form.get("confirm_snap") == "1", p.username, form.get("add_word") == "1",
        )
    except (RetrainError, nludata.SpanError, ValueError) as exc:
        return await inbox_page(request, status=400, error=str(exc))
    if result:
        return await inbox_page(request, status=200, review=result)
    raise web.HTTPSeeOther(f"{BASE}?done=accepted")


async def item_undo(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    try:
        await asyncio.to_thread(_undo, request.app[CONSOLE].engine, settings_of(request), _item_id(request))
    except RetrainError as exc:
        return await inbox_page(request, status=409, error=str(exc), shown="accepted")
    raise web.HTTPSeeOther(f"{BASE}?status=accepted&done=undone")


def _reject(engine: Any, item_id: int, who: str) -> int:
    with engine.begin() as conn:
        return inbox.review_group(conn, item_id, "rejected", who, now_utc())


async def item_reject(request: web.Request) -> web.StreamResponse:
    p = require(request, "admin")
    if not await asyncio.to_thread(_reject, request.app[CONSOLE].engine, _item_id(request), p.username):
        raise web.HTTPNotFound()
    raise web.HTTPSeeOther(f"{BASE}?done=rejected")


async def place_add(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    form = request["form"]
    try:
        added = await asyncio.to_thread(
            nludata.add_place, settings_of(request).data_dir, form_text(form, "name"),
            form_text(form, "district_code").strip(), form_text(form, "street_code").strip(),
            form_text(form, "community_code").strip(),
        )
    except ValueError as exc:
        return await inbox_page(request, status=400, error=str(exc))
    if not added:
        return await inbox_page(request, status=409, error="地名表里已有这个地名")
    raise web.HTTPSeeOther(f"{BASE}?done=place")


# --- training and models -----------------------------------------------------------------------


async def train_start(request: web.Request) -> web.StreamResponse:
    p = require(request, "admin")
    try:
        model_id = await asyncio.to_thread(trainer.start_training, request.app[CONSOLE].engine,
                                           settings_of(request), p.username)
    except TrainingBusy as exc:
        return await models_page(request, status=409, error=str(exc))
    except RetrainError as exc:
        return await models_page(request, status=500, error=str(exc))
    raise web.HTTPSeeOther(f"{BASE}/models/{model_id}")


async def models_page(request: web.Request, status: int = 200, error: str = "") -> web.Response:
    require(request, "admin")
    engine = request.app[CONSOLE].engine
    models = await asyncio.to_thread(trainer.list_models, engine)
    run = await asyncio.to_thread(trainer.running, engine)
    previous = await asyncio.to_thread(trainer.previous_model, engine)
    return await render(request, "retraining_models.html", status=status, models=models, run=run, error=error,
                        previous=previous, labels=STATUS_LABELS, title="模型训练 · 模型")


async def model_page(request: web.Request, status: int = 200, error: str = "", done: str = "") -> web.Response:
    require(request, "admin")
    model_id = _item_id(request, "model_id")
    model = await asyncio.to_thread(trainer.get_model, request.app[CONSOLE].engine, model_id)
    if model is None:
        raise web.HTTPNotFound()
    settings = settings_of(request)
    metrics = model["metrics"] or {}
    blocked = trainer.regression(metrics, settings.margin) if model["status"] == "candidate" else None
    log = await asyncio.to_thread(trainer.log_tail, Path(model["log_path"]) if model["log_path"] else None, 60)
    rows = []
    cand = ((metrics.get("candidate") or {}).get("split") or {}).get("per_intent") or {}
    base = ((metrics.get("baseline") or {}).get("split") or {}).get("per_intent") or {}
    for label in sorted(set(cand) | set(base)):
        rows.append((label, cand.get(label) or {}, base.get(label) or {}))
    running = model["status"] in ("queued", "validating", "training", "evaluating")
    return await render(
        request, "retraining_model.html", status=status, m=model, metrics=metrics, rows=rows, blocked=blocked,
        log=log, running=running, error=error, labels=STATUS_LABELS, margin=settings.margin,
        done=done or {"activated": "已启用：正在运行的每个 Rasa 服务器都已换用这个模型（未重启，进行中的对话不受影响）。",
                      "rollback": "已回退到上一个模型。"}.get(request.query.get("done", ""), ""),
        title=f"模型 #{model_id}",
    )


async def model_confusion(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    model = await asyncio.to_thread(trainer.get_model, request.app[CONSOLE].engine, _item_id(request, "model_id"))
    picture = ((model or {}).get("metrics") or {}).get("candidate", {}) or {}
    path = picture.get("confusion_png")
    if not path or not Path(path).is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(Path(path), headers={"Content-Type": "image/png", "Cache-Control": "private, max-age=600"})


async def model_activate(request: web.Request) -> web.StreamResponse:
    p = require(request, "admin")
    model_id = _item_id(request, "model_id")
    try:
        await asyncio.to_thread(trainer.activate, request.app[CONSOLE].engine, settings_of(request), model_id,
                                p.username)
    except RetrainError as exc:
        return await model_page(request, status=409, error=str(exc))
    raise web.HTTPSeeOther(f"{BASE}/models/{model_id}?done=activated")


async def rollback(request: web.Request) -> web.StreamResponse:
    p = require(request, "admin")
    try:
        model = await asyncio.to_thread(trainer.rollback, request.app[CONSOLE].engine, settings_of(request), p.username)
    except RetrainError as exc:
        return await models_page(request, status=409, error=str(exc))
    raise web.HTTPSeeOther(f"{BASE}/models/{model['id']}?done=rollback")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get(BASE, inbox_page)
    r.add_post(f"{BASE}/items/{{item_id}}/accept", item_accept)
    r.add_post(f"{BASE}/items/{{item_id}}/reject", item_reject)
    r.add_post(f"{BASE}/items/{{item_id}}/undo", item_undo)
    r.add_post(f"{BASE}/places", place_add)
    r.add_post(f"{BASE}/train", train_start)
    r.add_get(f"{BASE}/models", models_page)
    r.add_get(f"{BASE}/models/{{model_id}}", model_page)
    r.add_get(f"{BASE}/models/{{model_id}}/confusion.png", model_confusion)
    r.add_post(f"{BASE}/models/{{model_id}}/activate", model_activate)
    r.add_post(f"{BASE}/rollback", rollback)
