"""Who sent a request, for per-client limits (widget uploads, console log-in throttle)."""

from __future__ import annotations

import os
from collections.abc import Iterable


def trusted_proxies_from_env() -> tuple[str, ...]:
    """QC_TRUSTED_PROXIES: our reverse proxies' addresses, comma-separated."""
    return tuple(a.strip() for a in os.environ.get("QC_TRUSTED_PROXIES", "").split(",") if a.strip())


def client_address(remote: str | None, forwarded_for: str, trusted: Iterable[str]) -> str:
    """The peer, or behind one of our proxies the last X-Forwarded-For hop that is not a
    proxy of ours (earlier hops are whatever the client chose to claim)."""
    remote = remote or "?"
    trusted = tuple(trusted)
    if remote not in trusted:
        return remote
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return remote
