"""`python -m bench --quick`: the benchmark runs end to end on a tiny setting and writes its
report. Never asserts speed — a benchmark reports, it does not fail for being slow — only
that every system is in it and that the served runs lost nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUICK_TIMEOUT = 600  # ~4 minutes on 2 cores; the subprocess's own limit fails first, with its output

pytestmark = pytest.mark.timeout(QUICK_TIMEOUT + 120)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=QUICK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the benchmark stops its servers and jobs on SIGTERM
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        pytest.fail(f"python -m bench --quick took over {QUICK_TIMEOUT} s:\n{stdout[-3000:]}{stderr[-3000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return out, stdout


def test_report_has_every_table_and_system(quick_run):
    from bench.systems import LABELS

    out, stdout = quick_run
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Targets", "## Understanding", "## Routing", "## Speed through the real servers",
                    "## WeChat: the 5-second window"):
        assert heading in report
    for head in ("| system | split intent acc |", "| system | residents at once |", "| system | right |",
                 "| system | n | accuracy | macro-F1 | chat acc / F1 |"):
        assert head in report
    for label in LABELS.values():
        assert f"| {label} |" in report, label
        assert label in stdout  # the table printed at the end
    for png in ("confusion_split.png", "confusion_cv.png", "latency_n1.png", "latency_n2.png"):
        assert (out / png).stat().st_size > 0


def test_quick_run_served_without_errors_or_lost_tickets(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for system in ("ours", "stock"):
        served = results["served"][system]
        assert [r["concurrency"] for r in served["runs"]] == [1, 2]
        if system == "ours":  # the stock peer at 2 epochs may well misunderstand: reported, not asserted
            assert sum(r["errors"] for r in served["runs"]) == 0, served["runs"]
        t = served["tickets"]
        assert t["confirmed"] > 0 or system != "ours"
        assert (t["lost"], t["duplicates"], t["number_mismatch"], t["stored_without_confirmation"]) == (0, 0, 0, 0), t
        assert t["numbers_match"], t


def test_quick_run_measured_the_wechat_window(quick_run):
    out, stdout = quick_run
    w = json.loads((out / "results.json").read_text(encoding="utf-8"))["wechat"]
    assert (w["senders"], w["messages"]) == (3, 6)
    assert w["passive"] + w["async"] + w["lost"] + w["error"] == 6
    assert (w["lost"], w["error"]) == (0, 0), w
    assert "## WeChat: the 5-second window" in (out / "report.md").read_text(encoding="utf-8")
    assert "WeChat (5-second window)" in stdout


def test_quick_run_measured_the_smallest_rasa_bot_as_yardstick(quick_run):
    from bench.report import FLOOR_LABEL

    out, stdout = quick_run
    floor = json.loads((out / "results.json").read_text(encoding="utf-8"))["floor"]
    # levels (1, 1) and (2, 1): 4 turns per conversation, every reply answered
    assert [(r["concurrency"], r["turns"], r["errors"]) for r in floor["runs"]] == [(1, 4, 0), (2, 8, 0)]
    assert floor["train_s"] > 0
    assert f"| {FLOOR_LABEL} | 2 |" in (out / "report.md").read_text(encoding="utf-8")
    assert FLOOR_LABEL in stdout
