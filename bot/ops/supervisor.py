"""The loop that keeps `python -m bot serve` and `python -m bot cluster` running.

A child that exits (crash, OOM kill, `kill -9`) is logged with its name, pid and exit code
or signal, its leftover process group is cleared (nginx workers would keep the port), and
it is started again after a back-off (QC_RESTART_BACKOFF seconds, doubling up to 30 s).
The others keep serving meanwhile. A child that dies more than QC_RESTART_LIMIT times
(default 5) within QC_RESTART_WINDOW seconds (default 300) is given up on: everything is
stopped and `run` returns 1 with a message saying which child and why. SIGTERM or Ctrl-C
stops everything and returns 0.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import TextIO

from bot.security.ratelimit import env_int

MAX_BACKOFF = 30.0


def describe_exit(returncode: int) -> str:
    """'exit code 3' or 'killed by SIGKILL'."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Supervisor:
    """Watch `procs` (name → process, updated in place); `restart(name)` spawns a new one."""

    def __init__(self, procs: MutableMapping[str, subprocess.Popen], restart: Callable[[str], subprocess.Popen],
                 stop_all: Callable[[], None], limit: int | None = None, window: float | None = None,
                 backoff: float | None = None, out: TextIO = sys.stderr, poll: float = 0.5) -> None:
        self.procs, self.restart, self.stop_all = procs, restart, stop_all
        self.limit = limit if limit is not None else env_int("QC_RESTART_LIMIT", 5)
        self.window = window if window is not None else _env_float("QC_RESTART_WINDOW", 300)
        self.backoff = backoff if backoff is not None else _env_float("QC_RESTART_BACKOFF", 1)
        self.out, self.poll = out, poll
        self.deaths: dict[str, deque[float]] = {}
        self.pending: dict[str, float] = {}  # name → when to start it again
        self._stop: list[int] = []

    def say(self, line: str) -> None:
        print(f"supervisor: {line}", file=self.out, flush=True)

    def _reap(self, name: str, proc: subprocess.Popen, now: float) -> str | None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children it left behind (its own session)
        except (ProcessLookupError, PermissionError):
            pass
        return self._died(name, f"{name} (pid {proc.pid}) died: {describe_exit(proc.returncode)}", now)

    def _died(self, name: str, what: str, now: float) -> str | None:
        """Log a death and schedule the restart; the reason to give up, if it is time."""
        deaths = self.deaths.setdefault(name, deque())
        deaths.append(now)
        while deaths and deaths[0] < now - self.window:
            deaths.popleft()
        if len(deaths) > self.limit:
            return f"{what}; it died {len(deaths)} times within {self.window:.0f} s"
        delay = min(self.backoff * 2 ** (len(deaths) - 1), MAX_BACKOFF)
        self.say(f"{what}; restarting it in {delay:g} s (death {len(deaths)} of {self.limit} allowed "
                 f"within {self.window:.0f} s)")
        self.pending[name] = now + delay
        return None

    def run(self) -> int:
        def on_term(*_) -> None:
            self._stop.append(1)

        previous = signal.signal(signal.SIGTERM, on_term)
        for name, proc in self.procs.items():
            self.say(f"watching {name} (pid {proc.pid})")
        try:
            while not self._stop:
                now = time.monotonic()
                for name, proc in list(self.procs.items()):
                    if name in self.pending or proc.poll() is None:
                        continue
                    reason = self._reap(name, proc, now)
                    if reason:
                        self.say(f"giving up: {reason}; stopping everything")
                        return 1
                for name, due in list(self.pending.items()):
                    if due <= now:
                        del self.pending[name]
                        try:
                            proc = self.restart(name)
                        except Exception as exc:  # noqa: BLE001 - a failed start counts as a death
                            reason = self._died(name, f"{name} could not be started: {exc}", now)
                            if reason:
                                self.say(f"giving up: {reason}; stopping everything")
                                return 1
                            continue
                        self.procs[name] = proc
                        self.say(f"started {name} (pid {proc.pid})")
                time.sleep(self.poll)
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop_all()
