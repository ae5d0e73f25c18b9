"""python -m bot: tools for admins and developers.

  parse "文本" | parse --jsonl FILE   why a message goes where it goes (one JSON per line)
  dict                               regenerate data/dictionaries/gazetteer.txt
  serve                              start the assistant (what `make run` does)
  console seed|adduser|passwd|apikey the work console's accounts and Open311 keys
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional


def _quiet() -> None:
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
    _quiet()
    from bot.explain import Parser, read_jsonl_texts

    if not args.text and not args.jsonl:
        print("parse: give a text or --jsonl FILE", file=sys.stderr)
        return 2
    parser = Parser(Path(args.model) if args.model else None)
    out = sys.stdout
    if args.jsonl:
        fh = sys.stdin if args.jsonl == "-" else open(args.jsonl, encoding="utf-8")
        with fh:
            for text in read_jsonl_texts(fh):
                if text is None:
                    out.write(json.dumps({"error": "line is not a JSON object with a text field"}, ensure_ascii=False) + "\n")
                else:
                    out.write(json.dumps(parser.explain(text), ensure_ascii=False) + "\n")
                out.flush()
        return 0
    out.write(json.dumps(parser.explain(args.text), ensure_ascii=False) + "\n")
    return 0


def cmd_dict(args: argparse.Namespace) -> int:
    from bot.dictionaries import write_gazetteer_dictionary
    from bot.gazetteer import Gazetteer

    path = write_gazetteer_dictionary(Gazetteer.load())
    print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.serve import serve

    return serve(args.rasa_port, args.actions_port)


def cmd_cluster(args: argparse.Namespace) -> int:
    from bot.cluster import run_cluster

    return run_cluster(args.instances, args.proxy_port)


def cmd_console(args: argparse.Namespace) -> int:
    from bot.console.cli import main as console_main

    return console_main(args.rest)


def main(argv: Optional[List[str]] = None) -> int:
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
    co = sub.add_parser("console", add_help=False, help="work console: seed | adduser | passwd | apikey")
    co.add_argument("rest", nargs=argparse.REMAINDER)
    co.set_defaults(func=cmd_console)
    args = ap.parse_args(argv)
    return args.func(args)
