"""Typed application keys and settings for the web server."""
from __future__ import annotations

import os
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""
    rasa_url: str = "http://127.0.0.1:5005"

    @classmethod
    def from_env(cls) -> Settings:
        from bot.storage.engine import default_url

        return cls(
            host=os.environ.get("QC_WEB_HOST", "127.0.0.1"),
            port=int(os.environ.get("QC_WEB_PORT", "8080")),
            database_url=os.environ.get("QC_DATABASE_URL") or default_url(),
            rasa_url=os.environ.get("QC_RASA_URL", "http://127.0.0.1:5005"),
        )


SETTINGS = web.AppKey("settings", Settings)
