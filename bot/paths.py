"""Where the checkout's folders are: one definition for every module (run from the repo root)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"  # training data, reference tables, dictionaries
VAR_DIR = REPO_ROOT / "var"  # stores, logs, uploads, models in training: residents' data, kept 0700
