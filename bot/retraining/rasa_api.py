"""Where the running Rasa servers' HTTP API is and its token: var/rasa-api.json (mode 600),
written by `make run`/`make run-cluster` before the servers start (bot/retraining/serving.py),
read by the CLI (`python -m bot models activate|rollback`) and RetrainSettings.from_env, so
they find the servers the way the servers were started."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from bot.paths import VAR_DIR

API_FILE = VAR_DIR / "rasa-api.json"  # QC_RASA_API_FILE


def api_file() -> Path:
    return Path(os.environ.get("QC_RASA_API_FILE") or API_FILE)


def publish_api(rasa_urls: Sequence[str], token: str, path: Path | None = None) -> Path:
    """Write where the Rasa servers' HTTP API is and its token, readable by this user only."""
    path = path or api_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"rasa_url": rasa_urls[0], "rasa_model_urls": ",".join(rasa_urls), "token": token})
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read_api(path: Path | None = None) -> dict[str, str]:
    """What publish_api wrote ({} when nothing is running or it cannot be read)."""
    try:
        raw = json.loads((path or api_file()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: str(raw.get(k) or "") for k in ("rasa_url", "rasa_model_urls", "token")}
