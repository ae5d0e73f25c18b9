"""The WeChat channel's settings: credentials.yml values, else QC_WECHAT_* variables."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.channels.wechat.api import DEFAULT_API_BASE, Timeouts
from bot.channels.wechat.crypto import MessageCrypto
from bot.paths import VAR_DIR
from bot.uploads import upload_folder

CHANNEL_NAME = "wechat"  # Rasa's input/output channel name
ENV = {
    "token": "QC_WECHAT_TOKEN",
    "encoding_aes_key": "QC_WECHAT_AES_KEY",
    "appid": "QC_WECHAT_APPID",
    "secret": "QC_WECHAT_SECRET",
}
API_BASE_ENV = "QC_WECHAT_API_BASE"
TEMPLATE_ENV = "QC_WECHAT_TEMPLATE_ID"
MODES = ("auto", "plain", "safe", "compatible")
# 转人工: our console's queue, or WeChat's own 客服 system (bot/channels/wechat/handoff.py)
HANDOFF_MODES = ("queue", "transfer_customer_service")


@dataclass
class WeChatConfig:
    token: str = ""
    appid: str = ""
    secret: str = ""
    encoding_aes_key: str = ""
    mode: str = "auto"  # auto: safe when an EncodingAESKey is set, else plain
    api_base: str = DEFAULT_API_BASE
    database_url: str | None = None  # None: QC_DATABASE_URL / var/qingcheng.db, like the ticket store
    upload_dir: Path = VAR_DIR / "uploads"
    public_url: str = ""  # photo references: {public_url}/widget/photo/<name> (relative when empty)
    template_id: str = ""
    template_field: str = "content"
    passive_budget: float = 4.0
    rate_limit: int = 20
    rate_window: float = 60.0
    max_body: int = 64 * 1024
    timestamp_window: int = 300
    max_image_bytes: int = 10 * 1024 * 1024
    bot_timeout: float = 120.0
    processing_lease: float = 8.0  # < WeChat's retry spacing x2, so a retry can take over from a dead worker
    cs_window_hours: float = 48.0
    # the recovery sweep for async messages whose worker died before sending the answer
    replay_sweep_interval: float = 5.0
    replay_max_attempts: int = 4  # in all: the first try, takeovers and replays
    replay_max_age_hours: float = 47.0  # the answer must still fit in the 48-hour CS window
    handoff: str = "queue"
    handoff_push_interval: float = 1.0  # seconds between pushes of the agents' messages
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def enabled(self) -> bool:
        return bool(self.token and self.appid)

    @property
    def effective_mode(self) -> str:
        if self.mode == "auto":
            return "safe" if self.encoding_aes_key else "plain"
        return self.mode

    @classmethod
    def from_credentials(cls, credentials: Mapping[str, Any] | None) -> WeChatConfig:
        """credentials.yml values: a direct value (`token: ${QC_WECHAT_TOKEN}`, expanded by
        Rasa) or the NAME of the environment variable holding it (`token_env: …`); the
        default names are QC_WECHAT_TOKEN / _AES_KEY / _APPID / _SECRET."""
        creds = dict(credentials or {})

        def secret(key: str) -> str:
            direct = creds.get(key)
            if direct:
                return str(direct).strip()
            return os.environ.get(str(creds.get(f"{key}_env") or ENV[key]), "").strip()

        def number(key: str, default: float) -> float:
            value = creds.get(key)
            return default if value in (None, "") else float(value)

        cfg = cls(
            token=secret("token"),
            appid=secret("appid"),
            secret=secret("secret"),
            encoding_aes_key=secret("encoding_aes_key"),
            mode=str(creds.get("mode") or "auto"),
            api_base=str(creds.get("api_base") or os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE),
            database_url=creds.get("database_url") or None,
            upload_dir=Path(creds.get("upload_dir") or upload_folder()),
            public_url=str(creds.get("public_url") or os.environ.get("QC_PUBLIC_URL") or "").rstrip("/"),
            template_id=str(creds.get("template_id") or os.environ.get(TEMPLATE_ENV) or ""),
            template_field=str(creds.get("template_field") or "content"),
            passive_budget=number("passive_budget", 4.0),
            rate_limit=int(number("rate_limit", 20)),
            processing_lease=number("processing_lease", 8.0),
            replay_sweep_interval=number("replay_sweep_interval", 5.0),
            replay_max_attempts=int(number("replay_max_attempts", 4)),
            replay_max_age_hours=number("replay_max_age_hours", 47.0),
            handoff=str(creds.get("handoff") or "queue"),
            handoff_push_interval=number("handoff_push_interval", 1.0),
        )
        cfg.validate()
        return cfg

    @classmethod
    def from_env(cls) -> WeChatConfig:
        return cls.from_credentials({})

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"wechat mode must be one of {MODES}, not {self.mode!r}")
        if self.enabled and self.effective_mode in ("safe", "compatible"):
            MessageCrypto(self.encoding_aes_key, self.appid)  # raises on a malformed key
        if not 0 < self.passive_budget < 5:
            raise ValueError("passive_budget must be under WeChat's 5 seconds")
        if self.handoff not in HANDOFF_MODES:
            raise ValueError(f"wechat handoff must be one of {HANDOFF_MODES}, not {self.handoff!r}")
        if self.handoff_push_interval <= 0:
            raise ValueError("handoff_push_interval must be positive")
        if self.processing_lease < 1:
            raise ValueError("processing_lease must be at least 1 second")
        if self.replay_sweep_interval <= 0 or self.replay_max_attempts < 2 or self.replay_max_age_hours <= 0:
            raise ValueError("replay_sweep_interval and replay_max_age_hours must be positive, "
                             "replay_max_attempts at least 2")
