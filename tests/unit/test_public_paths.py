"""Dotted paths that deployed files name keep working after the move to bot/rasa_ext/ and
bot/ops/ (issue 16): endpoints files generated before it, and systemd units that run
`python -m bot.ops.actions_server`."""
import importlib
import subprocess
import sys

import pytest

from bot.paths import REPO_ROOT


@pytest.mark.parametrize("old, new", [
    ("bot.trackerstore.ResilientSQLTrackerStore", "bot.rasa_ext.trackerstore.ResilientSQLTrackerStore"),
    ("bot.sqlite_trackerstore.SQLiteTrackerStore", "bot.rasa_ext.sqlite_trackerstore.SQLiteTrackerStore"),
    ("bot.lockstore.AtomicRedisLockStore", "bot.rasa_ext.lockstore.AtomicRedisLockStore"),
    ("bot.eventbroker.BoundedPikaEventBroker", "bot.rasa_ext.eventbroker.BoundedPikaEventBroker"),
])
def test_an_endpoints_file_written_before_the_move_loads_the_same_class(old: str, new: str) -> None:
    from rasa.shared.utils.common import class_from_module_path

    assert class_from_module_path(old) is class_from_module_path(new)
    assert importlib.import_module(old.rsplit(".", 1)[0]).__name__ == old.rsplit(".", 1)[0]


def test_the_systemd_units_action_server_module_still_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "bot.actions_server", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--actions" in done.stdout and "--port" in done.stdout
