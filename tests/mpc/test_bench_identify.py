"""The identification benchmark itself: both preprocessing modes agree with plaintext."""

from benchmarks import bench_identify


def test_benchmark_runs_both_modes_and_agrees():
    r = bench_identify.main(["--gallery", "60", "--queries", "5", "--json"])
    assert r["agreement"] == 1.0
    assert r["online_ms_p50"] > 0 and r["total_ms_p50"] > 0
    assert r["online_ms_p50_pipelined"] is not None  # queries 2 and 4 ran pipelined
    assert r["pipelined_unqueued_requests"] == 0  # ... with every request queued up front
    assert r["bytes_per_query"] > 0 and r["rounds_per_query"] > 0
