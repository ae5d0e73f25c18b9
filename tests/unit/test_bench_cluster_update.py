"""`python -m bench.cluster --update OUT`: a cluster-only run replaces the cluster rows of an
existing report and the report says when and at which commit they were measured."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.cluster import update_report

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "results.json"


def _run(n: int, turns: float) -> dict:
    return {"instances": n, "residents": 50, "p50_ms": 700.0, "p95_ms": 1100.0, "p99_ms": 1300.0,
            "turns_per_s": turns, "tickets_per_s": turns / 4, "errors": 0, "lost": 0, "duplicates": 0,
            "tracker_problems": 0}


def test_update_replaces_the_cluster_rows_and_says_so(tmp_path: Path) -> None:
    shutil.copy(RESULTS, tmp_path / "results.json")
    before = json.loads(RESULTS.read_text(encoding="utf-8"))
    cluster = {"runs": [_run(1, 61.2), _run(2, 80.0)], "scaling": 80.0 / 61.2, "work_dir": "/tmp/x"}

    update_report(tmp_path, cluster, "abc1234", now="2026-11-25 11:40 UTC")

    after = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert after["cluster"]["runs"] == cluster["runs"]
    assert "work_dir" not in after["cluster"]
    assert after["cluster"]["remeasured"]["at"] == "2026-11-25 11:40 UTC"
    assert after["cluster"]["remeasured"]["commit"] == "abc1234"
    assert {k: v for k, v in after.items() if k != "cluster"} == {k: v for k, v in before.items() if k != "cluster"}
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| 1 | 50 | 700 / 1100 / 1300 | 61.2 | 15.30 | 0 | 0 | 0 | 0 |" in report
    assert "Throughput scaling 1 → 2 instances: 1.31×." in report
    assert ("These cluster rows were measured on their own (`python -m bench.cluster --update`) at "
            "2026-11-25 11:40 UTC, commit abc1234, load average [") in report
