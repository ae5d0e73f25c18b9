"""Helpers for the supervisor tests: `python -m bot serve|cluster` run as a real process,
each child found as the process listening on its port, a REST resident driven to the end."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import psutil

from bot.paths import REPO_ROOT

_CHILD = re.compile(r"supervisor: (?:watching|started) (?P<name>[\w-]+) \(pid (?P<pid>\d+)\)")


def _listens_on(proc: psutil.Process, port: int) -> bool:
    try:
        for p in (proc, *proc.children(recursive=True)):
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in p.net_connections(kind="inet")):
                return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return False
KEPT = "系统繁忙，您刚才的信息已记下，请稍后再试。"


class Supervised:
    """`python -m bot ARGS` with its stdout+stderr in `log`."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.ports: dict[str, int] = {}  # child name → the port it listens on (set by the test)
        full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "RASA_TELEMETRY_ENABLED": "false",
                "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=REPO_ROOT, env=full,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.proc.poll() is not None
            if text in self.output():
                return
            if exited:
                raise AssertionError(f"exited {self.proc.returncode} before {text!r}:\n{self.output()[-3000:]}")
            time.sleep(0.5)
        raise AssertionError(f"no {text!r} after {timeout:.0f} s:\n{self.output()[-3000:]}")

    def pid(self, name: str) -> int | None:
        """The supervisor's child listening on `name`'s port (None while there is none)."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return None
        return next((c.pid for c in children if _listens_on(c, self.ports[name])), None)

    def kill(self, name: str, timeout: float = 240) -> int:
        """kill -9 one child (the process itself, as an operator or the OOM killer would)."""
        deadline = time.monotonic() + timeout
        while (pid := self.pid(name)) is None:
            assert self.proc.poll() is None and time.monotonic() < deadline, f"no {name}:\n{self.output()[-3000:]}"
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, health_url: str, timeout: float = 240) -> int:
        """The supervisor logged the death, and a new process answers on the port."""
        self.wait_for(f"{name} (pid {old_pid}) died: killed by SIGKILL; restarting it in", 30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid(name)
            if pid is not None and pid != old_pid and answers(health_url):
                return pid
            assert self.proc.poll() is None, self.output()[-3000:]
            time.sleep(0.5)
        raise AssertionError(f"{name} not back after {timeout:.0f} s:\n{self.output()[-3000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill_all(self) -> None:
        """Clean-up after a failed test: every child, then the supervisor itself."""
        try:
            pids = [c.pid for c in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            pids = []
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for m in _CHILD.finditer(self.output()):
            try:
                os.killpg(int(m["pid"]), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def say(url: str, sender: str, message: str, timeout: float = 60):
    """One REST turn: (status, [texts]) — a 503's message counts as the text."""
    import json

    req = urllib.request.Request(url, data=json.dumps({"sender": sender, "message": message}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, [m.get("text") or "" for m in json.loads(resp.read())]
    except urllib.error.HTTPError as exc:
        return exc.code, [json.loads(exc.read()).get("message", "")]


def answer_for(kind: str, resident) -> str | None:
    """What a resident says to each question (bench.load's answers)."""
    return {"photo": "/deny", "phone": "/deny", "confidential": "/deny", "summary": "/affirm",
            "submit_failed": "提交", "location": resident.place, "category": f"/{resident.category}",
            "description": resident.first, "not_understood": resident.first}.get(kind)


def finish(url: str, sender: str, resident, message: str, turns: int = 10) -> list[str]:
    """Answer every question until the complaint is filed; the texts of each turn."""
    from bench.load import reply_kind

    seen = []
    for _ in range(turns):
        status, texts = say(url, sender, message)
        assert status == 200, (status, texts, seen)
        text = "\n".join(texts)
        seen.append(text)
        # what the last message asks (a turn may first answer a kept message)
        kind = "filed" if reply_kind(text) == "filed" else reply_kind(texts[-1] if texts else "")
        if kind == "filed":
            return seen
        message = answer_for(kind, resident)
        assert message, f"unexpected reply {text!r} after {seen}"
    raise AssertionError(f"not filed after {turns} turns: {seen}")
