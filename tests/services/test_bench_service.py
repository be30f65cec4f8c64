"""The service benchmark runs the daemons and concurrent edge clients end to end."""

import pytest

from benchmarks import bench_service


@pytest.mark.parametrize("logistic", [True, False], ids=["both-models", "templates-only"])
def test_service_benchmark_identifies_through_the_daemons(logistic):
    r = bench_service.run(gallery=12, terminals=2, queries=2, logistic=logistic)
    assert r["single_agreement"] == 1.0 and r["concurrent_agreement"] == 1.0
    assert r["concurrent_errors"] == [] and r["concurrent_per_s"] > 0
    assert r["single_total_ms_p50"] > 0 and r["rss_mb"]["p0"] > 0
    assert r["models"] == (["templates", "logistic"] if logistic else ["templates"])
