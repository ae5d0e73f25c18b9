"""The training job's process: `python -m bot.retraining.job MODEL_ID SETTINGS_JSON`
(started by trainer.start_training; not meant to be run by hand)."""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str]) -> int:
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    logging.basicConfig(level=logging.WARNING)
    from bot.retraining.trainer import RetrainSettings, run_job
    from bot.storage.engine import make_engine

    model_id, settings = int(argv[0]), RetrainSettings.from_json(argv[1])
    engine = make_engine(settings.database_url or None)
    try:
        run_job(engine, model_id, settings)
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
