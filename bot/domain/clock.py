"""The city's time zone and the clock: stored times are UTC, shown and counted in Hohhot's."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

# China has had no daylight saving since 1991: a fixed offset avoids needing tzdata.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
