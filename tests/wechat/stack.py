"""The real Rasa server + action server with the WeChat channel enabled, configured the
way an operator would: a credentials file with ${QC_WECHAT_*} and the secrets in the
environment, the API base pointing at the stand-in. (bot.ops.serve.start_stack always uses
the repository's credentials.yml, so this starts the two processes itself.)"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bot.ops.serve import VENV_BIN, actions_command, stop_stack, wait_http
from bot.paths import REPO_ROOT

CREDENTIALS = """\
bot.channels.rest.RestInput:
bot.channels.wechat.WeChatInput:
  token: ${QC_WECHAT_TOKEN}
  encoding_aes_key: ${QC_WECHAT_AES_KEY}
  appid: ${QC_WECHAT_APPID}
  secret: ${QC_WECHAT_SECRET}
  mode: %(mode)s
  passive_budget: %(passive_budget)s
"""


@dataclass
class WeChatStack:
    rasa_url: str
    webhook: str
    procs: list[subprocess.Popen]

    def stop(self) -> None:
        stop_stack(self.procs)


def start_wechat_stack(tmp: Path, rasa_port: int, actions_port: int, model: str, env: dict[str, str],
                       mode: str = "safe", log_name: str | None = None,
                       api_token: str | None = None, passive_budget: float = 4.0,
                       tracker_store: str = "") -> WeChatStack:
    """`tracker_store`: the endpoints file's tracker_store block (YAML), else Rasa's in-memory one."""
    tmp.mkdir(parents=True, exist_ok=True)
    credentials = tmp / "credentials.yml"
    credentials.write_text(CREDENTIALS % {"mode": mode, "passive_budget": passive_budget}, encoding="utf-8")
    endpoints = tmp / "endpoints.yml"
    endpoints.write_text(f'action_endpoint:\n  url: "http://127.0.0.1:{actions_port}/webhook"\n{tracker_store}',
                         encoding="utf-8")
    full_env = {**os.environ, **env, "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT)}
    rasa = str(VENV_BIN / "rasa")
    cmds = {
        "actions": actions_command(actions_port),  # ours: loopback (bot/ops/actions_server.py)
        "rasa": [rasa, "run", "-i", "127.0.0.1", "--port", str(rasa_port), "--credentials", str(credentials),
                 "--endpoints", str(endpoints), "--model", model]
        # the HTTP API the console's notification outbox calls (trigger_intent)
        + (["--enable-api", "--auth-token", api_token] if api_token else []),
    }
    procs = []
    for name, cmd in cmds.items():
        with open(tmp / f"{log_name or 'wechat'}-{name}.log", "ab") as log:  # the child keeps its own copy
            procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    ok = wait_http(f"http://127.0.0.1:{actions_port}/health", 90, procs[0]) and \
        wait_http(f"http://127.0.0.1:{rasa_port}/", 180, procs[1])
    if not ok:
        stop_stack(procs)
        raise RuntimeError(f"servers did not start; see {tmp}/*.log")
    url = f"http://127.0.0.1:{rasa_port}"
    return WeChatStack(url, f"{url}/webhooks/wechat/webhook", procs)
