"""One job of the benchmark in its own process: train a Rasa model (timed), load it, and
predict a list of texts. `python -m bench.worker JOB.json` writes the job's "result" file.

Jobs run two at a time (bench.cli): a DIET training keeps about one core busy on this kind of
machine, so the stock peer's long training and the cross-validation folds share the two cores.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def quiet_rasa() -> None:
    """No per-message debug lines from rasa's structlog, no library warnings."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.WARNING)
    try:
        from rasa.utils.log_utils import configure_structlog

        configure_structlog(logging.WARNING)
    except Exception:
        pass


def run_job(job: dict) -> dict:
    from bench import training
    from bench.systems import RasaModel

    out_dir = Path(job["out_dir"])
    nlu = Path(job["nlu"]) if job.get("nlu") else None
    data = [Path(d) for d in job["data"]] if job.get("data") else None
    model, secs = training.train(Path(job["config"]), out_dir, job["name"], nlu=nlu, data=data)
    quiet_rasa()
    rm = RasaModel(job["system"], model)
    t0 = time.perf_counter()
    preds = rm.predict(job["texts"])
    predict_s = time.perf_counter() - t0
    rm.close()
    if job.get("delete_model"):
        model.unlink(missing_ok=True)
    return {
        "name": job["name"],
        "model": str(model),
        "train_seconds": secs,
        "load_seconds": rm.load_seconds,
        "predict_seconds": predict_s,
        "preds": [{"intent": p.intent, "category": p.category, **({"parse": p.parse} if job.get("keep_parse") else {})}
                  for p in preds],
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = run_job(job)
    Path(job["result"]).write_text(json.dumps(result, ensure_ascii=False, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
