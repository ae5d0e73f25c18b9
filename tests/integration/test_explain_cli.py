"""`python -m bot parse`: one JSON object per input, in order, model loaded once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args, stdin=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RASA_TELEMETRY_ENABLED": "false"}
    return subprocess.run([sys.executable, "-m", "bot", "parse", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_parse_one_text():
    out = run("新城区公主府社区下水道堵了 污水漫到路上")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["intent"] == "drainage" and r["category"] == "drainage"
    assert {"text": "新城区", "level": "district", "code": "150102"} in r["locations"]
    assert {"text": "公主府社区", "level": "community", "code": "150102001001"} in r["locations"]
    assert r["route"]["lead"] == "drainage_authority"
    assert r["route"]["street_code"] == "150102001"
    assert r["route"]["dispatch_class"] == "utilities"
    assert "street:150102001" in r["route"]["co"]
    assert set(r["route"]) >= {"lead", "co", "street_code", "dispatch_class", "reason"}


def test_parse_jsonl_in_order(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text(
        "\n".join([
            json.dumps({"text": "你好"}, ensure_ascii=False),
            "not json",
            json.dumps({"text": "锦绣社区暖气不热", "id": 7}, ensure_ascii=False),
            json.dumps({"text": "楼下有人打架还拿着刀"}, ensure_ascii=False),
        ]) + "\n",
        encoding="utf-8",
    )
    out = run("--jsonl", str(f))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert len(rows) == 4
    assert rows[0]["intent"] == "greet" and rows[0]["category"] is None and rows[0]["route"] is None
    assert rows[1] == {"error": "line is not a JSON object with a text field"}
    assert rows[2]["category"] == "heating"
    assert rows[2]["location_status"] == "ambiguous" and rows[2]["street_code"] is None
    assert rows[2]["route"]["lead"] == "dispatch_center"
    assert rows[3]["intent"] == "emergency" and rows[3]["route"] is None
