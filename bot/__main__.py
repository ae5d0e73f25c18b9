"""Command line: python -m bot <command>. See `python -m bot --help`."""
from bot.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
