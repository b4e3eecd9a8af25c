"""LatencyRecorder folds into exactly the histogram direct recording gives; the Prometheus
families and their exposition through prometheus_client."""

from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from tickline.core.metrics import (
    PERCENTILES,
    FamiliesCollector,
    LatencyRecorder,
    ProcessorCollector,
    exposition,
    metric_families,
    prometheus_text,
)
from tickline.core.processor import EventProcessor


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 10**12), min_size=1, max_size=300), st.integers(1, 64))
def test_folded_histogram_equals_direct_recording(values: list[int], buffer_size: int) -> None:
    rec = LatencyRecorder("x", buffer_size=buffer_size)
    direct = HdrHistogram(1, 3_600_000_000_000, 3)
    for v in values:
        rec.record(v)
        direct.record_value(v)
        rec.check()
    snap = rec.snapshot()
    assert snap.count == len(values)
    assert snap.total == sum(values)
    assert (snap.min, snap.max) == (min(values), max(values))
    for p in PERCENTILES:
        assert snap.percentiles[p] == direct.get_value_at_percentile(p)
    assert list(rec.histogram.counts) == list(direct.counts)
    rec.check_counts()


def test_record_n_and_clamping() -> None:
    rec = LatencyRecorder("x", highest=1_000_000)
    rec.record_n(500, 10)
    rec.record(-5)  # a clock step backwards: clamped to lowest, counted
    rec.record(5_000_000)
    snap = rec.snapshot()
    assert snap.count == 12
    assert rec.clamped == 2
    assert snap.max == 1_000_000 and snap.min == 1
    assert snap.mean == pytest.approx((5000 + 1 + 1_000_000) / 12)
    rec.check()


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"buffer_size must be >= 1, got 0"):
        LatencyRecorder("x", buffer_size=0)


def test_prometheus_text_parses() -> None:
    rec = LatencyRecorder("wait_ns")
    for v in range(1, 1000):
        rec.record(v * 1000)
    text = prometheus_text("tl", {"processed": 7, "dropped": 0}, [rec.snapshot()],
                           labels={"processor": 'a"b'}, scale={"wait_ns": 1e-9})
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["tl_processed"].type == "counter"
    assert fams["tl_processed"].samples[0].value == 7
    summary = fams["tl_wait_seconds"]  # *_ns histograms are exported in seconds
    assert summary.type == "summary"
    quantiles = {s.labels["quantile"]: s.value for s in summary.samples
                 if s.name == "tl_wait_seconds" and "quantile" in s.labels}
    assert set(quantiles) == {"0.5", "0.9", "0.99", "0.999", "0.9999"}
    assert quantiles["0.5"] == pytest.approx(500e-6, rel=1e-2)
    count = next(s.value for s in summary.samples if s.name == "tl_wait_seconds_count")
    assert count == 999
    assert summary.samples[0].labels["processor"] == 'a"b'


def test_processor_prometheus_exposition_parses() -> None:
    p: EventProcessor[int] = EventProcessor(capacity=64)
    p.register(int, lambda e: None)
    p.submit_many(list(range(10)))
    p.poll()
    fams = {f.name: f for f in text_string_to_metric_families(p.prometheus())}
    assert fams["tickline_processor_processed"].samples[0].value == 10
    assert "tickline_processor_end_to_end_seconds" in fams
    assert "tickline_processor_batch_size" in fams


def test_metric_families_are_prometheus_client_families() -> None:
    """Counters, summaries with the HDR quantiles and ``_max`` gauges, exposed by
    ``generate_latest`` with the names the hand-written text had."""
    rec = LatencyRecorder("batch")
    rec.record_many([1, 2, 3, 4, 100])
    fams = metric_families("tl", {"processed": 7}, [rec.snapshot()], labels={"shard": "0"},
                           scale={"batch": 2.0}, help_text={"processed": "events handled"})
    assert [type(f) for f in fams] == [CounterMetricFamily, SummaryMetricFamily,
                                       GaugeMetricFamily]
    text = exposition(FamiliesCollector(lambda: fams))
    lines = text.splitlines()
    assert "# HELP tl_processed_total events handled" in lines
    assert "# TYPE tl_processed_total counter" in lines
    assert 'tl_processed_total{shard="0"} 7.0' in lines
    assert 'tl_batch{quantile="0.5",shard="0"} 6.0' in lines  # scaled by 2
    assert 'tl_batch_count{shard="0"} 5.0' in lines
    assert 'tl_batch_sum{shard="0"} 220.0' in lines
    assert 'tl_batch_max{shard="0"} 200.0' in lines
    assert "# TYPE tl_batch_max gauge" in lines


def test_processor_collector_reads_at_scrape_time_and_names_clash_loudly() -> None:
    """A collector reads the processor when scraped, not when registered; two collectors
    exposing the same names cannot share a registry."""
    p: EventProcessor[int] = EventProcessor(capacity=64, name="p1")
    p.register(int, lambda e: None)
    collector = ProcessorCollector(p, "tl_proc")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    p.submit_many(list(range(5)))
    p.poll()
    text = generate_latest(registry).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["tl_proc_processed"].samples[0].value == 5
    assert fams["tl_proc_processed"].samples[0].labels == {"processor": "p1"}
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(ProcessorCollector(p, "tl_proc"))
