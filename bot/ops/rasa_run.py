"""`rasa …` with Rasa's HTTP API token taken from the environment or a file, never from the
command line: a command line is readable by every local user (`ps`, /proc/<pid>/cmdline),
an environment and a 0600 file only by the service's own user.

    python -m bot.ops.rasa_run run --enable-api …   # token: QC_RASA_TOKEN, else the file QC_RASA_TOKEN_FILE

The token is added to this process's own argument list (which `ps` does not see) and Rasa's
command line entry point runs in this process, as `rasa` would.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

TOKEN_ENV = "QC_RASA_TOKEN"
TOKEN_FILE_ENV = "QC_RASA_TOKEN_FILE"


def token_from_env(env: os._Environ[str] | dict[str, str]) -> str:
    token = (env.get(TOKEN_ENV) or "").strip()
    if not token and env.get(TOKEN_FILE_ENV):
        token = Path(env[TOKEN_FILE_ENV]).read_text(encoding="utf-8").strip()
    return token


def main() -> None:
    args = sys.argv[1:]
    if "--auth-token" in args:
        sys.exit("bot.ops.rasa_run: pass the token in QC_RASA_TOKEN or QC_RASA_TOKEN_FILE, not on the command line")
    token = token_from_env(os.environ)
    if token and "--enable-api" in args:
        args += ["--auth-token", token]
    sys.argv = [str(Path(sys.executable).with_name("rasa")), *args]
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
