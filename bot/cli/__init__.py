"""Command lines: `python -m bot` (main.py) and its `calendar` commands (holidays.py)."""
