"""The OpenTelemetry Collector's own metrics (``otelcol_*``), named as Prometheus
scrapes them from otel/config.yml's ``service.telemetry.metrics.readers`` block.

A name the collector does not export is a finding like any other: the collector's
names are listed here instead of being accepted by prefix, because they depend on the
config. With the explicit ``readers`` block (an OpenTelemetry Prometheus exporter),
names carry their unit and counters end in ``_total``; without it the collector falls
back to names with neither (collector v0.144.0, internal/e2e/metric_stability_test.go,
cases "Metric readers" and "No metric readers (default)").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..paths import OTEL_CONFIG
from .files import as_dict, as_list
from .report import Report

# The release the table below was read from: OTELCOL_IMAGE in .env.example
# (tests/tools/test_check_stack.py fails when the pin moves).
COLLECTOR_VERSION = "0.144.0"

# (metric name without "otelcol_", unit, instrument) from the ``telemetry:`` sections of
# the collector's metadata.yaml files at v0.144.0: service/metadata.yaml (process),
# receiver/receiverhelper, processor/processorhelper, processor/batchprocessor,
# processor/memorylimiterprocessor and exporter/exporterhelper. "counter" is a
# monotonic sum; a non-monotonic sum is exported as a gauge.
COLLECTOR_TELEMETRY: tuple[tuple[str, str, str], ...] = (
    ("process_uptime", "s", "counter"),
    ("process_cpu_seconds", "s", "counter"),
    ("process_memory_rss", "By", "gauge"),
    ("process_runtime_heap_alloc_bytes", "By", "gauge"),
    ("process_runtime_total_alloc_bytes", "By", "counter"),
    ("process_runtime_total_sys_memory_bytes", "By", "gauge"),
    *(
        (f"receiver_{outcome}_{signal}", "{items}", "counter")
        for outcome in ("accepted", "refused", "failed")
        for signal in ("spans", "metric_points", "log_records", "profile_samples")
    ),
    ("receiver_requests", "{requests}", "counter"),
    ("processor_incoming_items", "{items}", "counter"),
    ("processor_outgoing_items", "{items}", "counter"),
    ("processor_internal_duration", "s", "histogram"),
    *(
        (f"processor_{outcome}_{signal}", "{items}", "counter")
        for outcome in ("accepted", "refused")
        for signal in ("spans", "metric_points", "log_records")
    ),
    ("processor_batch_batch_send_size", "{units}", "histogram"),
    ("processor_batch_batch_send_size_bytes", "By", "histogram"),
    ("processor_batch_batch_size_trigger_send", "{times}", "counter"),
    ("processor_batch_timeout_trigger_send", "{times}", "counter"),
    ("processor_batch_metadata_cardinality", "{combinations}", "gauge"),
    *(
        (f"exporter_{outcome}_{signal}", "{items}", "counter")
        for outcome in ("sent", "send_failed", "enqueue_failed")
        for signal in ("spans", "metric_points", "log_records", "profile_samples")
    ),
    ("exporter_queue_size", "{batches}", "gauge"),
    ("exporter_queue_capacity", "{batches}", "gauge"),
    ("exporter_queue_batch_send_size", "{units}", "histogram"),
    ("exporter_queue_batch_send_size_bytes", "By", "histogram"),
)

# UCUM units the OpenTelemetry Prometheus exporter spells out as a name suffix;
# annotations in braces ({spans}) add none.
_UNIT_SUFFIXES = {"s": "seconds", "By": "bytes"}


def prometheus_sample_names(name: str, unit: str, instrument: str) -> set[str]:
    """The sample names a collector metric has behind a Prometheus ``readers`` exporter:
    the unit suffix unless the name already ends in it, ``_total`` on counters."""
    suffix = _UNIT_SUFFIXES.get(unit)
    base = f"otelcol_{name}"
    if suffix and not base.endswith(f"_{suffix}"):
        base = f"{base}_{suffix}"
    if instrument == "counter":
        return {f"{base}_total"}
    if instrument == "histogram":
        return {f"{base}_bucket", f"{base}_count", f"{base}_sum"}
    return {base}


def collector_metric_names() -> frozenset[str]:
    """Every ``otelcol_*`` sample name the pinned collector may export here."""
    return frozenset(
        sample
        for name, unit, instrument in COLLECTOR_TELEMETRY
        for sample in prometheus_sample_names(name, unit, instrument)
    )


def has_prometheus_reader(otel_config: Mapping[str, Any]) -> bool:
    """Whether otel/config.yml serves its metrics through an explicit Prometheus pull
    reader, the one that gives the names :func:`collector_metric_names` lists."""
    telemetry = as_dict(as_dict(otel_config.get("service")).get("telemetry"))
    readers = as_list(as_dict(telemetry.get("metrics")).get("readers"))
    return any(
        "prometheus" in as_dict(as_dict(as_dict(reader).get("pull")).get("exporter"))
        for reader in readers
    )


def check_collector_readers(otel_config: Mapping[str, Any], report: Report) -> None:
    if not has_prometheus_reader(otel_config):
        report.add(
            OTEL_CONFIG,
            "service.telemetry.metrics has no readers/pull/prometheus exporter: the"
            " collector then serves its otelcol_* metrics without unit and _total suffixes,"
            " and every query of those names (collector alerts, dashboards, runbook)"
            " matches nothing",
        )
