# Public path: installed systemd units (deploy/systemd/qingcheng-actions@.service) run `python -m bot.actions_server`.
import sys

from bot.ops.actions_server import main

if __name__ == "__main__":
    sys.exit(main())
