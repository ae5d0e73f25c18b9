"""Console settings (environment) and its application key."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bot.console.tables import ROLES
from bot.storage.transcripts import Transcripts, transcripts_from
from bot.uploads import upload_folder
from bot.web.clientaddr import trusted_proxies_from_env


def _flag(name: str, default: str = "0") -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


# Units call residents back: by default every role may reveal a phone number (but never a
# 保密 ticket's to a unit: bot/console/services/privacy.py).
DEFAULT_PHONE_ROLES = frozenset(ROLES)


def phone_roles_from(raw: str | None) -> frozenset[str]:
    """QC_PHONE_ROLES: roles, comma-separated; unset or blank: DEFAULT_PHONE_ROLES; "none":
    nobody. An unknown role stops the start (a typo must not quietly show or hide phones)."""
    text = (raw or "").strip().lower()
    if not text:
        return DEFAULT_PHONE_ROLES
    if text == "none":
        return frozenset()
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise ValueError(f"QC_PHONE_ROLES: unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}")
    return roles


@dataclass(frozen=True)
class ConsoleConfig:
    cookie_secure: bool = False  # QC_COOKIE_SECURE=1 behind HTTPS
    session_hours: float = 8.0  # QC_SESSION_HOURS
    upload_dir: Path = field(default_factory=upload_folder)  # QC_UPLOAD_DIR (default var/uploads)
    rasa_token: str | None = None  # QC_RASA_TOKEN: the Rasa server's --auth-token
    notifier: bool = True  # QC_NOTIFIER=0: no background worker (tests drive it by hand)
    notifier_interval: float = 2.0  # QC_NOTIFIER_INTERVAL seconds
    sweep_every: float = 60.0  # seconds between overdue sweeps
    seed_demo: bool = False  # create missing demo accounts at start (python -m bot serve does)
    # QC_TRUSTED_PROXIES: behind them the log-in throttle counts the forwarded client, not the proxy
    trusted_proxies: tuple[str, ...] = ()
    phone_roles: frozenset[str] = DEFAULT_PHONE_ROLES  # QC_PHONE_ROLES: who may reveal phones
    # where the conversations behind tickets are (the retention job's settings: QC_TRACKER_DB_URL,
    # QC_TRACKER_DB_SCHEMA, else the embedded files QC_RETENTION_TRACKER_FILES)
    tracker_url: str | None = None
    tracker_schema: str | None = None
    tracker_files: str | None = None

    @classmethod
    def from_env(cls) -> ConsoleConfig:
        return cls(
            cookie_secure=_flag("QC_COOKIE_SECURE"),
            session_hours=float(os.environ.get("QC_SESSION_HOURS", "8")),
            upload_dir=upload_folder(),
            rasa_token=os.environ.get("QC_RASA_TOKEN") or None,
            notifier=_flag("QC_NOTIFIER", "1"),
            notifier_interval=float(os.environ.get("QC_NOTIFIER_INTERVAL", "2")),
            seed_demo=_flag("QC_SEED_DEMO"),
            trusted_proxies=trusted_proxies_from_env(),
            phone_roles=phone_roles_from(os.environ.get("QC_PHONE_ROLES")),
            **_trackers(),
        )

    def transcript_stores(self) -> list[Transcripts]:
        return transcripts_from(self.tracker_url, self.tracker_schema, self.tracker_files)


def _trackers() -> dict[str, str | None]:
    from bot.services.retention import RetentionSettings

    s = RetentionSettings.from_env()
    return {"tracker_url": s.tracker_url, "tracker_schema": s.tracker_schema, "tracker_files": s.tracker_files}
