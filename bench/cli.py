"""`python -m bench [--quick] [--out DIR]`: the whole benchmark, then the table.

Order: our training, timed alone → the Rasa model jobs (the stock peer's model; every
cross-validation fold of ours and of the stock peer) two at a time in subprocesses, while
this process scores ours on the split and the scikit-learn / keyword peers → the speed part
through the real servers, with nothing else running → report.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bot.paths import REPO_ROOT  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "bench" / "results"
PARALLEL_JOBS = 2


@dataclass(frozen=True)
class Settings:
    mode: str
    split_limit: int | None  # None: the whole held-out split
    cv_folds: int
    cv_sample: int | None  # None: all training examples
    stock_epochs: int | None  # stock peer's model for split + serving; None: as written (100)
    stock_cv_epochs: int | None  # stock peer's DIET in cross-validation; None: as written
    stock_eager: bool  # TensorFlow eager mode for the stock peer (quick only: no graph tracing)
    stock_on_sample: bool  # the stock peer's served model trained on the CV sample only (quick only)
    levels: tuple[tuple[int, int], ...]  # (residents at once, complaints each)
    warmup: int
    parse_texts: int | None  # None: every split text
    time_our_training: bool
    wechat_senders: int  # WeChat senders at once (the 5-second window)
    retraining: bool  # time the console's full retraining (validate + train + evaluate) on the shipped data
    cluster_residents: int | None  # production cluster, 1 then 2 instances behind nginx; None: not run


# The stock peer's DIET costs ~30 s an epoch on 2 cores with this data (about an hour for its
# 100 epochs, during which one core is free): its model for the split and serving keeps the 100
# epochs; the cross-validation folds train it with 20 on the other core, which ends about when
# the 100-epoch model does. `--stock-cv-epochs 100` is the faithful CV, some five hours more.
FULL = Settings("full", None, 5, None, None, 20, False, False, ((1, 20), (10, 4), (50, 2)), 2, None, True, 20, True, 50)
QUICK = Settings("quick", 20, 2, 150, 2, 2, True, True, ((1, 1), (2, 1)), 1, 20, False, 3, False, None)


class Log:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        print(f"[bench {time.perf_counter() - self.t0:6.0f}s] {msg}", flush=True)


def machine_info() -> dict:
    import platform

    import psutil
    import rasa
    import sklearn

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import tensorflow as tf  # rasa's own dependency

        tf_version = tf.__version__
    except Exception:
        tf_version = "?"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": {"python": platform.python_version(), "rasa": rasa.__version__, "scikit-learn": sklearn.__version__,
                     "tensorflow": tf_version},
    }


_RUNNING: set = set()  # job processes under way (stopped when the run fails)


def _stop_jobs() -> None:
    for p in list(_RUNNING):
        if p.poll() is None:
            p.terminate()


def run_job(job: dict, work: Path) -> dict:
    """bench.worker in a subprocess: train (timed), load, predict; returns its result."""
    jobs = work / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    job = {**job, "result": str(jobs / f"{job['name']}.result.json")}
    spec = jobs / f"{job['name']}.json"
    spec.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    log_path = jobs / f"{job['name']}.log"
    from bench.training import rasa_env

    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bench.worker", str(spec)], cwd=REPO_ROOT, env=rasa_env(),
                                stdout=log, stderr=subprocess.STDOUT)
        _RUNNING.add(proc)
        try:
            proc.wait()
        finally:
            _RUNNING.discard(proc)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"bench job {job['name']} failed (exit {proc.returncode}); end of {log_path}:\n{tail}")
    return json.loads(Path(job["result"]).read_text(encoding="utf-8"))


def run(settings: Settings, out: Path, work: Path, log: Log, model: Path | None = None) -> dict:
    from bench import data, training
    from bench.load import bench_served, latency_plot, pick_residents
    from bench.routing import routing_scores
    from bench.systems import KEYWORDS, LABELS, OURS, STOCK, TFIDF, KeywordRules, Prediction, RasaModel, TfidfLR
    from bench.understanding import confusion_plot, scores, summarise_folds
    from bot.nlu.explain import latest_model

    results: dict = {"settings": asdict(settings), "machine": machine_info(),
                     "date": time.strftime("%Y-%m-%d %H:%M %Z"), "train": {}, "plots": []}
    stock_cfg = training.stock_config(work / "stock_zh.yml", diet_epochs=settings.stock_epochs,
                                      ted_epochs=settings.stock_epochs, run_eagerly=settings.stock_eager)
    stock_cv_cfg = training.stock_config(work / "stock_zh_cv.yml", diet_epochs=settings.stock_cv_epochs,
                                         ted_epochs=settings.stock_epochs, run_eagerly=settings.stock_eager)
    results["stock_epochs"] = {
        "diet": training.component_setting(stock_cfg, "pipeline", "DIETClassifier", "epochs"),
        "ted": training.component_setting(stock_cfg, "policies", "TEDPolicy", "epochs"),
        "diet_cv": training.component_setting(stock_cv_cfg, "pipeline", "DIETClassifier", "epochs"),
        "diet_as_written": training.component_setting(training.STOCK_CONFIG, "pipeline", "DIETClassifier", "epochs"),
        "eager": settings.stock_eager,
        "on_sample": settings.stock_on_sample,
    }

    # --- our training, timed alone (fresh cache, temp dir) ----------------------------------------
    have_model = model is not None or bool(list((REPO_ROOT / "models").glob("*.tar.gz")))
    if settings.time_our_training or not have_model:
        log("training ours: rasa train (config.yml, domain.yml, data/) into a temp dir, nothing else running …")
        fresh, secs = training.train(training.OUR_CONFIG, work / "models", "ours")
        results["train"][OURS] = secs
        log(f"  ours trained in {secs:.1f} s")
        if not have_model:
            model = fresh
    our_model = model or latest_model()
    if settings.retraining:
        log("retraining as an admin starts it (bot/retraining: rasa data validate, rasa train, evaluation on the split) …")
        from bench.retraining import full_retraining

        results["retraining"] = full_retraining(work / "retraining")
        r = results["retraining"]
        log(f"  validate {r['validate_s']} s + train {r['train_s']} s + evaluate {r['evaluate_s']} s = {r['total_s']} s")
    results["our_model"] = str(our_model.relative_to(REPO_ROOT) if our_model.is_relative_to(REPO_ROOT) else our_model)

    # --- the data ---------------------------------------------------------------------------------
    split = data.load_split(settings.split_limit)
    texts = [e.text for e in split]
    from bench import independent

    ind_rows = independent.load_independent()
    if settings.split_limit is not None:  # quick: a sample of the independent set too
        ind_rows = ind_rows[:: max(1, len(ind_rows) // settings.split_limit)]
    ind_texts = [r["text"] for r in ind_rows]
    td = data.load_training()
    train_ex = data.training_examples(td)
    idx = list(range(len(train_ex)))
    if settings.cv_sample:
        idx = data.stratified_subsample([e.intent for e in train_ex], settings.cv_sample)
    folds = data.folds([train_ex[i].intent for i in idx], settings.cv_folds)
    fold_sets = []
    for k, (tr, te) in enumerate(folds, 1):
        tr_idx, te_idx = [idx[i] for i in tr], [idx[i] for i in te]
        fold_sets.append((tr_idx, te_idx, data.write_nlu_yaml(td, tr_idx, work / "folds" / f"fold{k}.yml")))
    log(f"held-out split: {len(split)} messages; training data: {len(train_ex)} examples; "
        f"cross-validation: {len(folds)} folds over {len(idx)} of them")

    # --- the Rasa model jobs, two at a time ---------------------------------------------------------
    ep = results["stock_epochs"]
    log(f"jobs: the stock peer's model (DIET {ep['diet']} epochs{', eager' if ep['eager'] else ''}) and "
        f"{len(folds)} folds × (ours, stock with DIET {ep['diet_cv']} epochs), {PARALLEL_JOBS} at a time …")
    stock_data = None
    if settings.stock_on_sample:
        stock_data = [*[str(d) for d in training.DIALOGUE_DATA if d.exists()],
                      str(data.write_nlu_yaml(td, idx, work / "sample_nlu.yml"))]
    jobs = [{"name": "stock", "system": STOCK, "config": str(stock_cfg), "nlu": None, "data": stock_data,
             "out_dir": str(work / "models"), "texts": texts + ind_texts, "keep_parse": True}]
    for k, (tr_idx, te_idx, fold_file) in enumerate(fold_sets, 1):
        for system, cfg in ((OURS, training.OUR_CONFIG), (STOCK, stock_cv_cfg)):
            jobs.append({"name": f"{system}-fold{k}", "system": system, "config": str(cfg), "nlu": str(fold_file),
                         "out_dir": str(work / "folds"), "texts": [train_ex[i].text for i in te_idx],
                         "delete_model": True})
    # ours first in the queue: short jobs, so the stock folds follow on the free core
    jobs = [jobs[0]] + [j for j in jobs[1:] if j["system"] == OURS] + [j for j in jobs[1:] if j["system"] == STOCK]
    pool = ThreadPoolExecutor(max_workers=PARALLEL_JOBS)
    futures = {j["name"]: pool.submit(run_job, j, work) for j in jobs}

    try:
        # meanwhile, here: ours on the split, the peers without Rasa
        preds: dict[str, list] = {}
        ours = RasaModel(OURS, our_model)
        preds[OURS] = ours.predict(texts)
        ind_preds = {OURS: ours.predict(ind_texts)}
        tfidf = TfidfLR().fit([e.text for e in train_ex], [e.intent for e in train_ex])
        results["train"][TFIDF] = tfidf.fit_seconds
        tfidf_preds = tfidf.predict(texts)
        kw_preds = KeywordRules().predict(texts)
        ind_preds[TFIDF] = tfidf.predict(ind_texts)
        ind_preds[KEYWORDS] = KeywordRules().predict(ind_texts)
        n_residents = settings.warmup + sum(c * k for c, k in settings.levels)
        residents = pick_residents(ours.parser, n_residents)
        ours.close()
        fold_peers = []
        for tr_idx, te_idx, _ in fold_sets:
            te_texts = [train_ex[i].text for i in te_idx]
            fold_peers.append({
                TFIDF: TfidfLR().fit([train_ex[i].text for i in tr_idx], [train_ex[i].intent for i in tr_idx]).predict(te_texts),
                KEYWORDS: KeywordRules().predict(te_texts),
            })
        log("  ours on the split and the scikit-learn / keyword peers done; waiting for the model jobs")

        def result(name: str) -> dict:
            r = futures[name].result()
            log(f"  job {name}: trained in {r['train_seconds']:.0f} s, loaded in {r['load_seconds']:.0f} s")
            return r

        def as_preds(r: dict) -> list:
            return [Prediction(p["intent"], p["category"], p.get("parse")) for p in r["preds"]]

        fold_results = {name: result(name) for name in futures if name != "stock"}
        stock_main = result("stock")
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_jobs()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    results["train"][STOCK] = stock_main["train_seconds"]
    stock_model = Path(stock_main["model"])

    # --- understanding on the held-out split and the independent set, per register ----------------
    stock_all = as_preds(stock_main)
    preds[STOCK] = stock_all[: len(texts)]
    ind_preds[STOCK] = stock_all[len(texts):]
    results["independent"] = {s: independent.scores(ind_rows, ind_preds[s]) for s in (OURS, STOCK, TFIDF, KEYWORDS)}
    for s, r in results["independent"].items():
        log(f"  independent {s}: accuracy {r['all']['accuracy']:.3f} macro-F1 {r['all']['macro_f1']:.3f}; "
            + ", ".join(f"{reg} {r[reg]['accuracy']:.3f}" for reg in independent.REGISTERS))
    preds[TFIDF] = tfidf_preds
    preds[KEYWORDS] = kw_preds
    preds = {s: preds[s] for s in (OURS, STOCK, TFIDF, KEYWORDS)}
    results["split"] = {s: scores(split, p) for s, p in preds.items()}
    for s in preds:
        r = results["split"][s]
        log(f"  split {s}: intent acc {r['intent_acc']:.3f} F1 {r['intent_f1']:.3f}; "
            f"category acc {r['cat_acc']:.3f} F1 {r['cat_f1']:.3f}")
    results["plots"].append(confusion_plot(split, preds, out / "confusion_split.png",
                                           f"Held-out split ({len(split)} messages): category confusion").name)
    results["routing"] = routing_scores(split, preds)
    log("  routing: " + ", ".join(f"{s} {r['right']}/{r['n']}" for s, r in results["routing"].items()))

    # --- cross-validation ------------------------------------------------------------------------------
    fold_scores: dict[str, list[dict]] = {s: [] for s in preds}
    pooled_ex: list = []
    pooled: dict[str, list] = {s: [] for s in preds}
    cv_train_secs: dict[str, list[float]] = {OURS: [], STOCK: []}
    for k, (tr_idx, te_idx, _) in enumerate(fold_sets, 1):
        te_ex = [train_ex[i] for i in te_idx]
        fp = {OURS: as_preds(fold_results[f"{OURS}-fold{k}"]), STOCK: as_preds(fold_results[f"{STOCK}-fold{k}"]),
              **fold_peers[k - 1]}
        for s in (OURS, STOCK):
            cv_train_secs[s].append(fold_results[f"{s}-fold{k}"]["train_seconds"])
        for s, p in fp.items():
            fold_scores[s].append(scores(te_ex, p))
            pooled[s] += p
        pooled_ex += te_ex
        log(f"  fold {k}/{len(fold_sets)}: " + ", ".join(f"{s} cat F1 {fold_scores[s][-1]['cat_f1']:.3f}" for s in preds))
    results["cv"] = {s: {**summarise_folds(fold_scores[s]), "pooled": scores(pooled_ex, pooled[s])} for s in preds}
    results["cv_train_seconds"] = {s: sum(v) / len(v) for s, v in cv_train_secs.items() if v}
    results["plots"].append(confusion_plot(pooled_ex, pooled, out / "confusion_cv.png",
                                           f"{settings.cv_folds}-fold cross-validation ({len(pooled_ex)} "
                                           f"training examples, pooled): category confusion").name)

    # --- speed through the real servers, nothing else running ----------------------------------------
    parse_texts = [e.text for e in data.load_split()][: settings.parse_texts or None]
    results["served"] = {}
    results["machine"]["load_avg_at_speed"] = [round(x, 2) for x in os.getloadavg()]
    latencies = {}
    for system, m in ((OURS, our_model), (STOCK, stock_model)):
        log(f"speed: serving {system} ({LABELS[system]}) …")
        r = bench_served(system, m, residents, settings.levels, parse_texts, work / f"stack-{system}",
                         warmup=settings.warmup, log=log)
        results["served"][system] = {"runs": r.runs, "parse": r.parse, "rss_mb": r.rss_mb, "tickets": r.tickets,
                                     "startup_s": r.startup_s}
        latencies[system] = r.latencies
    log("speed: the smallest bot Rasa serves (2 intents, 2 rules, no custom action), Rasa as shipped …")
    from bench.floor import run_floor

    results["floor"] = run_floor(settings.levels, work / "floor", log=log)
    log(f"WeChat channel: {settings.wechat_senders} senders at once, signed and encrypted, against the stand-in …")
    from bench import wechat

    results["wechat"] = wechat.run(senders=settings.wechat_senders, model=str(our_model), work=work / "wechat")
    w = results["wechat"]
    log(f"  {w['within_5s']}/{w['messages']} answered within 5 s ({w['passive']} passive, {w['async']} async, "
        f"{w['lost']} lost, {w['error']} errors)")
    if settings.cluster_residents:
        log(f"production cluster (PostgreSQL, Redis, RabbitMQ, nginx): {settings.cluster_residents} residents at once, "
            "1 then 2 instances …")
        from bench.cluster import run_cluster_bench

        results["cluster"] = run_cluster_bench(settings.cluster_residents, (1, 2), model=str(our_model),
                                               work_dir=work / "cluster", log=log)
    for concurrency, _ in settings.levels:
        by_system = {s: latencies[s].get(concurrency, []) for s in latencies}
        results["plots"].append(latency_plot(concurrency, by_system, out / f"latency_n{concurrency}.png", LABELS).name)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="tiny setting for the test suite: 20 split messages, 2 folds on ~150 examples, "
                         "1-2 residents, the stock peer's DIET/TED at 2 epochs in eager mode")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where report.md and the plots go ({DEFAULT_OUT})")
    ap.add_argument("--model", type=Path, help="our trained model (default: the newest in models/)")
    ap.add_argument("--stock-epochs", type=int, help="the stock peer's DIET/TED epochs for the split and serving "
                    "(default: as bench/configs/stock_zh.yml says)")
    ap.add_argument("--stock-cv-epochs", type=int, help="the stock peer's DIET epochs in cross-validation "
                    f"(default: {FULL.stock_cv_epochs}, --quick {QUICK.stock_cv_epochs})")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory (models, logs)")
    ap.add_argument("--render", action="store_true", help="only rewrite report.md from OUT/results.json and print the table")
    args = ap.parse_args(argv)
    if args.render:
        from bench.report import console_tables, write_report

        results = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        write_report(results, args.out / "report.md")
        print(console_tables(results))
        return 0
    os.chdir(REPO_ROOT)  # rasa reads config/domain/data relative to the repository root
    # SIGTERM unwinds like Ctrl-C: the servers are stopped and the work directory removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from bench.worker import quiet_rasa

    quiet_rasa()
    settings = QUICK if args.quick else FULL
    if args.stock_epochs is not None:
        settings = replace(settings, stock_epochs=args.stock_epochs)
    if args.stock_cv_epochs is not None:
        settings = replace(settings, stock_cv_epochs=args.stock_cv_epochs)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="qc-bench-"))
    log = Log()
    log(f"{settings.mode} run; results → {out}; work dir {work}")
    t0 = time.perf_counter()
    try:
        results = run(settings, out, work, log, args.model.resolve() if args.model else None)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["duration_s"] = time.perf_counter() - t0
    from bench.report import console_tables, write_report

    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    report = write_report(results, out / "report.md")
    log(f"wrote {report} and {', '.join(results['plots'])}")
    print()
    print(console_tables(results))
    return 0
