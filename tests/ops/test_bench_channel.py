"""The channel benchmark measures real round trips through the CurveZMQ peer link."""

from benchmarks import bench_channel


def test_channel_round_trips_are_measured():
    r = bench_channel.measure(5)
    small, big = r["rtt_ms_0B"]["p50"], r["rtt_ms_1048576B"]["p50"]
    assert 0 < small < 1000 and big > small  # a megabyte costs more than an empty frame
