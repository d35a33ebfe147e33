"""Every key of grafana/provisioning exists in Grafana 11.6 (the pinned minor).

Grafana ignores unknown provisioning keys silently: a typo (``urlDisplayLable``) leaves
a link or correlation missing without any error. Sources, for Grafana v11.6:
- administration/provisioning ("Data sources", "Dashboards"): the top-level, data source
  and provider keys and the common jsonData keys;
- datasources/prometheus/configure ("Provision the Prometheus data source"): its jsonData
  and exemplarTraceIdDestinations;
- datasources/tempo/configure-tempo-data-source/provision: Tempo's jsonData
  (tracesToMetrics, serviceMap, nodeGraph, search, traceQuery, spanBar, ...);
- datasources/alertmanager ("Provision the data source"): implementation and
  handleGrafanaManagedAlerts.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.config_schemas import ANY_KEY, Schema, unknown_key_paths

PROVISIONING = REPO_ROOT / paths.GRAFANA_PROVISIONING_DIR
DATASOURCES = REPO_ROOT / paths.DATASOURCES_FILE
DASHBOARDS = REPO_ROOT / paths.DASHBOARD_PROVIDERS


def _keys(*names: str) -> Schema:
    return dict.fromkeys(names)


_COMMON_JSON_DATA = _keys(
    "tlsAuth",
    "tlsAuthWithCACert",
    "tlsSkipVerify",
    "serverName",
    "timeout",
    "keepCookies",
    "oauthPassThru",
    "httpHeaderName1",
    "httpHeaderName2",
    "httpHeaderName3",
    "manageAlerts",
)
JSON_DATA: dict[str, Schema] = {
    "prometheus": {
        **_COMMON_JSON_DATA,
        **_keys(
            "httpMethod",
            "prometheusType",
            "prometheusVersion",
            "timeInterval",
            "queryTimeout",
            "defaultEditor",
            "disableMetricsLookup",
            "cacheLevel",
            "incrementalQuerying",
            "incrementalQueryOverlapWindow",
            "disableRecordingRules",
            "customQueryParameters",
            "seriesLimit",
            "alertmanagerUid",
            "allowAsRecordingRulesTarget",
        ),
        "exemplarTraceIdDestinations": _keys("name", "datasourceUid", "url", "urlDisplayLabel"),
    },
    "tempo": {
        **_COMMON_JSON_DATA,
        "tracesToLogsV2": None,
        "tracesToProfiles": None,
        "tracesToMetrics": {
            **_keys("datasourceUid", "spanStartTimeShift", "spanEndTimeShift"),
            "tags": _keys("key", "value"),
            "queries": _keys("name", "query"),
        },
        "serviceMap": _keys("datasourceUid"),
        "nodeGraph": _keys("enabled"),
        "search": _keys("hide", "filters"),
        "lokiSearch": _keys("datasourceUid"),
        "traceQuery": _keys("timeShiftEnabled", "spanStartTimeShift", "spanEndTimeShift"),
        "spanBar": _keys("type", "tag"),
        "streamingEnabled": _keys("search", "metrics"),
        "tagLimit": None,
    },
    "alertmanager": {**_COMMON_JSON_DATA, **_keys("implementation", "handleGrafanaManagedAlerts")},
}
_DATASOURCE = _keys(
    "name",
    "type",
    "uid",
    "access",
    "orgId",
    "url",
    "user",
    "database",
    "basicAuth",
    "basicAuthUser",
    "withCredentials",
    "isDefault",
    "version",
    "editable",
    "secureJsonData",
)
DASHBOARDS_SCHEMA: Schema = {
    "apiVersion": None,
    "providers": {
        **_keys(
            "name",
            "orgId",
            "folder",
            "folderUid",
            "type",
            "disableDeletion",
            "updateIntervalSeconds",
            "allowUiUpdates",
        ),
        "options": _keys("path", "foldersFromFilesStructure"),
    },
}


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def datasource_unknown_keys(config: dict[str, Any]) -> list[str]:
    schema: Schema = {
        "apiVersion": None,
        "prune": None,
        "deleteDatasources": _keys("name", "orgId", "uid"),
        "datasources": None,
    }
    unknown = unknown_key_paths(config, schema)
    for index, datasource in enumerate(config.get("datasources") or []):
        kind = datasource.get("type")
        if kind not in JSON_DATA:
            unknown.append(f"datasources[{index}].type {kind!r} (no jsonData allow-list)")
            continue
        entry: Schema = {**_DATASOURCE, "jsonData": JSON_DATA[kind]}
        unknown += unknown_key_paths(datasource, entry, f"datasources[{index}]")
    return unknown


def test_every_datasource_key_exists_in_grafana_11_6() -> None:
    assert datasource_unknown_keys(_load(DATASOURCES)) == []


def test_every_dashboard_provider_key_exists_in_grafana_11_6() -> None:
    assert unknown_key_paths(_load(DASHBOARDS), DASHBOARDS_SCHEMA) == []


def _datasource(config: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in config["datasources"] if d["type"] == kind)
    return found


@pytest.mark.parametrize(
    ("kind", "path", "old", "new"),
    [
        ("prometheus", ("exemplarTraceIdDestinations", 0), "urlDisplayLabel", "urlDisplayLable"),
        ("tempo", ("tracesToMetrics",), "datasourceUid", "datasourceUID"),
        ("alertmanager", (), "implementation", "implementaton"),
    ],
)
def test_a_datasource_key_typo_is_caught(
    kind: str, path: tuple[str | int, ...], old: str, new: str
) -> None:
    config = copy.deepcopy(_load(DATASOURCES))
    node: Any = _datasource(config, kind)["jsonData"]
    for step in path:
        node = node[step]
    node[new] = node.pop(old)
    unknown = datasource_unknown_keys(config)
    assert any(entry.endswith(f".{new}") for entry in unknown), unknown


def test_a_provider_key_typo_is_caught() -> None:
    config = _load(DASHBOARDS)
    provider = config["providers"][0]
    provider["allowUIUpdates"] = provider.pop("allowUiUpdates")
    assert unknown_key_paths(config, DASHBOARDS_SCHEMA) == ["providers[0].allowUIUpdates"]


def test_the_allow_list_has_no_wildcard() -> None:
    """Grafana's keys are fixed names: a wildcard would let every typo through."""
    assert ANY_KEY not in DASHBOARDS_SCHEMA
    assert all(ANY_KEY not in schema for schema in JSON_DATA.values())
