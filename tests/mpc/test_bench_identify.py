"""The identification benchmark itself: both preprocessing modes agree with plaintext."""

from benchmarks import bench_identify


def test_benchmark_runs_both_modes_and_agrees():
    r = bench_identify.main(["--gallery", "60", "--queries", "5", "--json"])
    assert r["agreement"] == 1.0
    assert r["online_ms_p50"] > 0 and r["total_ms_p50"] > 0
    assert r["online_ms_p50_pipelined"] is not None  # queries 2 and 4 ran pipelined
    assert r["pipelined_unqueued_requests"] == 0  # ... with every request queued up front
    assert r["bytes_per_query"] > 0 and r["rounds_per_query"] > 0


def test_wan_run_goes_through_a_relay_that_really_delays():
    """--rtt-ms: the P0-P1 link crosses the relay, so every round pays the round trip."""
    r = bench_identify.main(["--gallery", "30", "--queries", "3", "--rtt-ms", "30",
                             "--mbit", "100", "--json"])
    assert r["agreement"] == 1.0 and r["rtt_ms"] == 30 and r["mbit"] == 100
    assert 29 <= r["relay_rtt_ms"] < 60
    # each protocol round waits for the other server at least once across the link
    assert r["total_ms_p50"] >= 0.5 * r["rounds_per_query"] * 30 / 2
