"""The console's wiring, and nothing else: its routes in one place, the Console state,
and the resources opened and closed with the app (cleanup_ctx: engine, holiday calendar,
notifier). The handlers live in views.py and the pages' modules; the middlewares in
middleware.py (their order is set in bot/web/app.py).

    GET  /console/                      → the queue
    GET  /console/login, POST /console/login, POST /console/logout
    GET  /console/queue?view=open|done|all|dispatch|returned|overdue|extension&page=N
    GET  /console/tickets/{id}          timeline + the actions this user may take
    POST /console/tickets/{id}/{action} accept|work|return|extend|resolve|dispatch|redispatch|
                                        recategorise|reject_return|approve_extension|reopen
    POST /console/tickets/{id}/ask      询问居民: a question to the resident's chat (outbox)
    GET  /console/tickets/{id}/answers/{question_id}/photo  a resident's photo answer
    POST /console/tickets/{id}/reports/{report_id}/reveal/{phone|description}
                                        a resident's phone or description unmasked (logged)
    GET  /console/attachments/{id}      an after-photo (permission-checked)
    GET  /console/tickets/{id}/photos/{report_id}  a resident's photo (permission-checked)
    GET  /console/tickets/{id}/additions/{index}/photo  a photo the resident added (补充)
    GET  /console/notices               worker notices (the badge)
    GET  /console/dashboard, /console/export/… , /console/outbox, /console/users,
         /console/calendar, /console/retraining/…, /console/privacy/views (查看记录), /console/intake (来电登记),
         /console/handoff/… (转人工, bot/console/handoff.py),
         /console/phrases (常用语)
    POST /console/export                an export including 保密 tickets, with a reason
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from sqlalchemy.engine import Engine

from bot.console import admin, calendar, dashboard, handoff, intake, phrases, retraining, viewlog, views
from bot.console import services as svc
from bot.console.config import ConsoleConfig
from bot.console.http import (
    CONSOLE,
    CONSOLE_CONFIG,
    CONSOLE_ENGINE,
    PREFIX,
    STATIC,
    Console,
)
from bot.console.notifier import Notifier, channels_for
from bot.domain.clock import now_utc
from bot.services.events import publisher_from_env
from bot.storage import holidays
from bot.storage.engine import init_db, make_engine
from bot.web.keys import SETTINGS

__all__ = ["CONSOLE", "CONSOLE_CONFIG", "CONSOLE_ENGINE", "setup_console"]


async def _console_ctx(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    if CONSOLE_CONFIG in app:
        console.config = app[CONSOLE_CONFIG]
    if CONSOLE_ENGINE in app:
        console.engine, console.owns_engine = app[CONSOLE_ENGINE], False
    if console.engine is None:
        console.engine = make_engine(app[SETTINGS].database_url)
        await asyncio.to_thread(init_db, console.engine)
    installed = holidays.install(console.engine)  # the city's holiday calendar, re-read every QC_CALENDAR_TTL s
    await asyncio.to_thread(svc.ensure_feed, console.uow(), now_utc())
    if console.config.seed_demo:
        created = await asyncio.to_thread(svc.seed_demo_accounts, console.uow(), now_utc())
        svc.print_demo_accounts(created)
    http: aiohttp.ClientSession | None = None
    task: asyncio.Task | None = None
    if console.config.notifier:
        http = aiohttp.ClientSession()
        console.notifier = Notifier(
            console.uow,
            channels_for(app[SETTINGS].rasa_url, console.config.rasa_token, http),
            interval=console.config.notifier_interval,
            sweep_every=console.config.sweep_every,
            publisher=publisher_from_env(console.engine),
        )
        task = asyncio.create_task(console.notifier.run(), name="console-notifier")
        console.notifier_task = task
    try:
        yield
    finally:
        await _stop_notifier(app)  # already done by on_shutdown when aiohttp ran it
        if http is not None:
            await http.close()
        holidays.uninstall(installed)
        if console.owns_engine and console.engine is not None:
            console.engine.dispose()


async def _stop_notifier(app: web.Application) -> None:
    """Stop the notifier (the delivery in flight is finished and recorded) and close its
    RabbitMQ connection. Runs on_shutdown, before aiohttp waits (up to its shutdown_timeout)
    for every task started after start-up: the connection's reader tasks never end on their
    own, so the web server lingered until stop_stack's SIGKILL. Idempotent."""
    console = app[CONSOLE]
    task, console.notifier_task = console.notifier_task, None
    if task is not None and console.notifier is not None:
        await console.notifier.stop(task)
    if console.notifier is not None and console.notifier.publisher is not None:
        await console.notifier.publisher.close()


def setup_console(app: web.Application, engine: Engine | None = None, config: ConsoleConfig | None = None) -> None:
    app[CONSOLE] = Console(config or ConsoleConfig.from_env(), engine)
    r = app.router
    r.add_get(PREFIX, views.home)
    r.add_get(PREFIX + "/", views.home)
    r.add_get(f"{PREFIX}/login", views.login_page)
    r.add_post(f"{PREFIX}/login", views.login_submit)
    r.add_post(f"{PREFIX}/logout", views.logout)
    r.add_get(f"{PREFIX}/queue", views.queue)
    r.add_get(f"{PREFIX}/tickets/{{ticket_id}}", views.ticket_get)
    r.add_post(f"{PREFIX}/tickets/{{ticket_id}}/ask", views.ask)  # before the generic action route
    r.add_post(f"{PREFIX}/tickets/{{ticket_id}}/{{action}}", views.ticket_action)
    r.add_post(f"{PREFIX}/tickets/{{ticket_id}}/reports/{{report_id}}/reveal/{{field}}", views.reveal)
    r.add_get(f"{PREFIX}/attachments/{{attachment_id}}", views.attachment)
    r.add_get(f"{PREFIX}/tickets/{{ticket_id}}/photos/{{report_id}}", views.report_photo)
    r.add_get(f"{PREFIX}/tickets/{{ticket_id}}/additions/{{index}}/photo", views.addition_photo)
    r.add_get(f"{PREFIX}/tickets/{{ticket_id}}/answers/{{question_id}}/photo", views.answer_photo)
    r.add_get(f"{PREFIX}/notices", views.notices_page)
    r.add_static(f"{PREFIX}/static/", STATIC, follow_symlinks=False, append_version=False)
    calendar.setup(app)
    dashboard.setup(app)
    admin.setup(app)
    retraining.setup(app)
    viewlog.setup(app)
    intake.setup(app)
    handoff.setup(app)
    phrases.setup(app)
    app.cleanup_ctx.append(_console_ctx)
    app.on_shutdown.append(_stop_notifier)
