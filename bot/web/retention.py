"""The retention job (bot/services/retention.py) started with the web server and stopped
with it (cleanup_ctx). Off with QC_RETENTION=0."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from bot.services.retention import RetentionJob, RetentionSettings
from bot.web.keys import SETTINGS

RETENTION_SETTINGS = web.AppKey("retention_settings", RetentionSettings)  # set before start to override the environment


@dataclass
class RetentionState:
    job: RetentionJob | None = None  # while the app runs (tests look at it)


RETENTION = web.AppKey("retention", RetentionState)


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app.get(RETENTION_SETTINGS) or RetentionSettings.from_env()
    if not settings.enabled:
        yield
        return
    from bot.storage.engine import make_engine
    from bot.uploads import upload_folder

    # its own small pool: a run never waits behind the console's requests (the schema is
    # brought up to date by the console's start-up, which runs before this one)
    engine = make_engine(app[SETTINGS].database_url, pool_size=1, max_overflow=1) \
        if not app[SETTINGS].database_url.startswith("sqlite") else make_engine(app[SETTINGS].database_url)
    job = RetentionJob(engine, settings, upload_folder())
    app[RETENTION].job = job
    job.start()
    try:
        yield
    finally:
        await job.stop()
        engine.dispose()
        app[RETENTION].job = None


def setup_retention(app: web.Application) -> None:
    app[RETENTION] = RetentionState()
    app.cleanup_ctx.append(_retention_ctx)
