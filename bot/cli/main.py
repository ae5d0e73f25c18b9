"""python -m bot: tools for admins and developers.

  parse "文本" | parse --jsonl FILE   why a message goes where it goes (one JSON per line)
  dict                               regenerate data/dictionaries/gazetteer.txt
  serve                              start the assistant (what `make run` does)
  console seed|adduser|passwd|apikey the work console's accounts and Open311 keys
  calendar import FILE|show Y|export Y the holiday calendar the city keeps (docs/holidays.md)
  retrain [--wait]                   validate the data and train a candidate model (one at a time)
  models list|show ID|activate ID|rollback   the model registry; activation swaps the running server's model
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def quiet() -> None:
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import structlog

    # rasa logs every parse at debug level through structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    import jieba

    jieba.setLogLevel(logging.ERROR)


def cmd_parse(args: argparse.Namespace) -> int:
    quiet()
    from bot.nlu.explain import Parser, read_jsonl_texts

    if not args.text and not args.jsonl:
        print("parse: give a text or --jsonl FILE", file=sys.stderr)
        return 2
    with Parser(Path(args.model) if args.model else None) as parser:
        if args.jsonl:
            fh = sys.stdin if args.jsonl == "-" else open(args.jsonl, encoding="utf-8")
            with fh:
                for text in read_jsonl_texts(fh):
                    if text is None:
                        line = {"error": "line is not a JSON object with a text field"}
                    else:
                        line = parser.explain(text)
                    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
            return 0
        sys.stdout.write(json.dumps(parser.explain(args.text), ensure_ascii=False) + "\n")
    return 0


def cmd_dict(args: argparse.Namespace) -> int:
    from bot.reference.dictionaries import write_gazetteer_dictionary
    from bot.reference.gazetteer import Gazetteer

    path = write_gazetteer_dictionary(Gazetteer.load())
    print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.ops.serve import serve

    return serve(args.rasa_port, args.actions_port)


def cmd_cluster(args: argparse.Namespace) -> int:
    from bot.ops.cluster import run_cluster

    return run_cluster(args.instances, args.proxy_port)


def cmd_endpoints(args: argparse.Namespace) -> int:
    """The Rasa endpoints file for this environment (production profile: every store)."""
    from bot.ops.production import endpoints_yaml

    text = endpoints_yaml(args.action_url)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_run_rasa(args: argparse.Namespace) -> int:
    """Write the endpoints file from the environment, then become the Rasa server (systemd)."""
    from bot.ops.production import endpoints_yaml, rasa_env
    from bot.paths import REPO_ROOT, VAR_DIR

    out = Path(args.endpoints_out or VAR_DIR / f"endpoints-{args.port}.yml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(endpoints_yaml(args.action_url), encoding="utf-8")
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", **rasa_env()}
    # bot.ops.rasa_run adds QC_RASA_TOKEN (or QC_RASA_TOKEN_FILE's) itself: never on a command line (`ps`)
    python = sys.executable
    cmd = [python, "-m", "bot.ops.rasa_run", "run", "-i", args.host, "-p", str(args.port), "--credentials",
           "credentials.yml", "--endpoints", str(out), "--model", args.model]
    from bot.ops.rasa_run import token_from_env

    if token_from_env(os.environ):
        cmd += ["--enable-api"]
    os.chdir(REPO_ROOT)
    os.execve(python, cmd, env)
    return 1  # not reached


def cmd_prepare_store(args: argparse.Namespace) -> int:
    """Migrations (alembic upgrade head), queues and routing rules; safe to run on every start."""
    from bot.services.setup import prepare_store
    from bot.storage.engine import make_engine

    engine = make_engine()
    try:
        prepare_store(engine)
    finally:
        engine.dispose()
    print("ticket store ready")
    return 0


def cmd_nginx_conf(args: argparse.Namespace) -> int:
    """nginx.conf for the production layout on separate hosts (deploy/nginx/)."""
    from bot.ops.cluster import nginx_conf

    sys.stdout.write(nginx_conf(args.listen, args.internal_listen, args.rasa, args.actions, args.web,
                                prefix=None, user=args.user))
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from bot.console.cli import main as console_main

    return console_main(args.rest)


def _retrain_settings(args: argparse.Namespace):
    from dataclasses import replace

    from bot.retraining.trainer import RetrainSettings

    settings = RetrainSettings.from_env()
    if getattr(args, "data_dir", None):
        settings = replace(settings, data_dir=Path(args.data_dir).resolve())
    if getattr(args, "config", None):
        settings = replace(settings, config=Path(args.config).resolve())
    return settings


def cmd_retrain(args: argparse.Namespace) -> int:
    from bot.retraining import trainer
    from bot.storage.engine import init_db, make_engine

    settings = _retrain_settings(args)
    engine = make_engine(settings.database_url)
    init_db(engine)
    try:
        model_id = trainer.start_training(engine, settings, args.by, wait=args.wait)
    except trainer.RetrainError as exc:
        print(f"retrain: {exc}", file=sys.stderr)
        return 1
    if not args.wait:
        print(f"training model #{model_id} in the background; `python -m bot models show {model_id}` for progress")
        return 0
    return _show(engine, model_id)


def _show(engine, model_id: int) -> int:
    from bot.retraining import trainer

    m = trainer.get_model(engine, model_id)
    if m is None:
        print(f"models: no model #{model_id}", file=sys.stderr)
        return 1
    metrics = m["metrics"] or {}
    cand = (metrics.get("candidate") or {}).get("split") or {}
    base = (metrics.get("baseline") or {}).get("split") or {}
    print(json.dumps({
        "id": m["id"], "status": m["status"], "progress": m["progress"], "created_by": m["created_by"],
        "data_hash": m["data_hash"], "path": m["path"], "duration_s": m["duration_s"], "error": m["error"],
        "split_accuracy": cand.get("accuracy"), "baseline_split_accuracy": base.get("accuracy"),
        "reviewed_accuracy": ((metrics.get("candidate") or {}).get("reviewed") or {}).get("accuracy"),
        "blocked": trainer.regression(metrics, _retrain_settings(argparse.Namespace()).margin)
        if m["status"] == "candidate" else None,
    }, ensure_ascii=False, indent=1))
    return 0 if m["status"] != "failed" else 1


def cmd_models(args: argparse.Namespace) -> int:
    from bot.retraining import trainer
    from bot.storage.engine import init_db, make_engine

    settings = _retrain_settings(args)
    engine = make_engine(settings.database_url)
    init_db(engine)
    try:
        if args.action == "list":
            for m in trainer.list_models(engine):
                acc = ((m["metrics"] or {}).get("candidate") or {}).get("split", {}).get("accuracy")
                print(f"#{m['id']:<4} {m['status']:<10} {m['created_at']:%Y-%m-%d %H:%M} {m['created_by']:<10} "
                      f"acc={acc if acc is not None else '-'} {(m['data_hash'] or '')[:12]} {m['path'] or ''}")
            return 0
        if args.action == "show":
            return _show(engine, int(args.id))
        if args.action == "activate":
            trainer.activatable(engine, settings, int(args.id))
        else:
            prev = trainer.previous_model(engine)
            if prev is None:
                raise trainer.RetrainError("没有可以回退到的上一个模型")
            trainer.activatable(engine, settings, prev["id"])
        if not settings.rasa_token:
            from bot.retraining.rasa_api import api_file

            print(f"models: 找不到 Rasa 服务器的 API 令牌：没有 QC_RASA_TOKEN，也没有 {api_file()}"
                  "（make run / make run-cluster 启动时写下）。请先启动服务，或设置 QC_RASA_TOKEN 和 QC_RASA_URL。",
                  file=sys.stderr)
            return 1
        if args.action == "activate":
            m = trainer.activate(engine, settings, int(args.id), args.by)
        else:
            m = trainer.rollback(engine, settings, args.by)
        print(f"model #{m['id']} is active ({m['path']})")
        return 0
    except (trainer.RetrainError, ValueError, TypeError) as exc:
        print(f"models: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot", description="青城诉求 tools")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="explain how a message is understood and routed")
    p.add_argument("text", nargs="?", help="the message")
    p.add_argument("--jsonl", metavar="FILE", help="objects with a text field, one per line ('-' for stdin)")
    p.add_argument("--model", help="model archive (default: newest in models/)")
    p.set_defaults(func=cmd_parse)
    d = sub.add_parser("dict", help="regenerate the jieba gazetteer dictionary")
    d.set_defaults(func=cmd_dict)
    sv = sub.add_parser("serve", help="start the action server and the Rasa server")
    sv.add_argument("--rasa-port", type=int, default=5005)
    sv.add_argument("--actions-port", type=int, default=5055)
    sv.set_defaults(func=cmd_serve)
    cl = sub.add_parser("cluster", help="production profile: n Rasa + n action servers + web behind nginx")
    cl.add_argument("--instances", type=int, default=2)
    cl.add_argument("--proxy-port", type=int, default=int(os.environ.get("QC_PROXY_PORT", "8000")))
    cl.set_defaults(func=cmd_cluster)
    ep = sub.add_parser("endpoints", help="write Rasa's endpoints file from the environment (QC_PROFILE)")
    ep.add_argument("--action-url", default=os.environ.get("QC_ACTION_URL", "http://127.0.0.1:5055/webhook"))
    ep.add_argument("--out", help="file to write (default: stdout)")
    ep.set_defaults(func=cmd_endpoints)
    rr = sub.add_parser("run-rasa", help="endpoints file from the environment, then `rasa run` (systemd units)")
    rr.add_argument("--host", default="0.0.0.0")
    rr.add_argument("--port", type=int, default=5005)
    rr.add_argument("--model", default="models")
    rr.add_argument("--action-url", default=os.environ.get("QC_ACTION_URL", "http://127.0.0.1:5055/webhook"))
    rr.add_argument("--endpoints-out")
    rr.set_defaults(func=cmd_run_rasa)
    ps = sub.add_parser("prepare-store", help="migrate the ticket store and load queues and routing rules")
    ps.set_defaults(func=cmd_prepare_store)
    ng = sub.add_parser("nginx-conf", help="print nginx.conf for Rasa/action/web servers on other hosts")
    ng.add_argument("--listen", default="0.0.0.0:80")
    ng.add_argument("--internal-listen", default="10.0.0.10:8081", help="private address: Rasa → actions, console → Rasa")
    ng.add_argument("--rasa", nargs="+", required=True, metavar="HOST:PORT")
    ng.add_argument("--actions", nargs="+", required=True, metavar="HOST:PORT")
    ng.add_argument("--web", nargs="+", required=True, metavar="HOST:PORT")
    ng.add_argument("--user", default="www-data")
    ng.set_defaults(func=cmd_nginx_conf)
    co = sub.add_parser("console", add_help=False, help="work console: seed | adduser | passwd | apikey")
    co.add_argument("rest", nargs=argparse.REMAINDER)
    co.set_defaults(func=cmd_console)
    ca = sub.add_parser("calendar", add_help=False, help="holiday calendar: import FILE.yml | show YEAR | export YEAR")
    ca.add_argument("rest", nargs=argparse.REMAINDER)
    ca.set_defaults(func=lambda a: __import__("bot.cli.holidays", fromlist=["main"]).main(a.rest))
    rt = sub.add_parser("retrain", help="validate the data and train a candidate model")
    rt.add_argument("--wait", action="store_true", help="wait for the run and print its result")
    rt.add_argument("--data-dir", help="training data folder (default data/, or QC_TRAIN_DATA_DIR)")
    rt.add_argument("--config", help="pipeline config (default config.yml)")
    rt.add_argument("--by", default=os.environ.get("USER", "cli"), help="who asked (for the registry)")
    rt.set_defaults(func=cmd_retrain)
    md = sub.add_parser("models", help="the model registry: list | show ID | activate ID | rollback")
    md.add_argument("action", choices=("list", "show", "activate", "rollback"))
    md.add_argument("id", nargs="?")
    md.add_argument("--by", default=os.environ.get("USER", "cli"))
    md.set_defaults(func=cmd_models)
    argv = sys.argv[1:] if argv is None else argv
    for own in (co, ca):  # their own parsers: REMAINDER would not take a leading -h
        if argv[:1] == [own.prog.split()[-1]]:
            return own.get_default("func")(argparse.Namespace(rest=argv[1:]))
    args = ap.parse_args(argv)
    if getattr(args, "action", None) in ("show", "activate") and not (args.id or "").isdigit():
        ap.error(f"models {args.action} needs a model number")
    return args.func(args)
