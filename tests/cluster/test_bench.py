"""bench/cluster.py's tiny mode: the benchmark's own path (start the cluster, residents
through nginx, store and tracker checks, stop, clean up) runs and reports soundly."""
from __future__ import annotations

from tests.cluster.conftest import require_services


def test_cluster_bench_tiny(tmp_path):
    require_services()
    from bench.cluster import run_cluster_bench

    result = run_cluster_bench(instances=(1,), tiny=True, work_dir=tmp_path, log=lambda *_: None)
    (run,) = result["runs"]
    assert run["instances"] == 1 and run["residents"] == 2
    assert (run["tickets"], run["errors"], run["lost"], run["duplicates"], run["number_mismatch"],
            run["tracker_problems"]) == (2, 0, 0, 0, 0, 0), run
    assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"] <= run["max_ms"]
    assert run["turns_per_s"] > 0 and run["tickets_per_s"] > 0
    assert result["scaling"] == 1.0
