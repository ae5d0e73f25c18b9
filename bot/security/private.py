"""Residents' data on disk is the service user's alone: SQLite stores (trackers hold phone
numbers unmasked) and uploaded photos are 0600 files in 0700 folders, whatever the umask."""
from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(folder: Path | str) -> Path:
    """Create `folder` (and missing parents, 0700) if needed, and make it 0700."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for parent in reversed(missing):  # mkdir(parents=True) would give the parents the umask's mode
        parent.mkdir(exist_ok=True, mode=DIR_MODE)
        os.chmod(parent, DIR_MODE)
    os.chmod(folder, DIR_MODE)
    return folder


def private_file(path: Path | str) -> None:
    """Make an existing file 0600 (a no-op when it does not exist)."""
    try:
        os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        pass


def private_sqlite(path: Path | str) -> None:
    """Before SQLite opens `path`: its folder exists, the file exists as 0600 (SQLite gives
    its -wal/-shm/-journal files the database file's mode), and files left 0644 by an older
    version are made 0600."""
    path = Path(path)
    if str(path) in ("", ":memory:") or str(path).startswith("file:"):
        return
    if not path.parent.exists():
        private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        private_file(p)
