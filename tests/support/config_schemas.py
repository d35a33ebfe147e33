"""Allowed key paths of the collector and Tempo configs, and the walker that checks them.

Both pinned releases refuse keys they do not know, at start-up; these schemas, written
from the pinned releases' config structs (cited per block), let the tests name any key
at any depth that is not allowed. tests/stack/test_grafana_provisioning.py reuses the walker
for Grafana, which ignores unknown keys silently instead.
"""

from __future__ import annotations

# --- every key path, against the pinned releases' config structs ------------------------
#
# Tempo unmarshals its YAML strictly and the collector decodes every component config
# with mapstructure's ErrorUnused: a typo at any depth is a restart loop. A schema is a
# mapping of allowed keys to the schema of their value: None accepts any value (a leaf,
# or a block this stack leaves alone), ANY_KEY stands for user-chosen keys (pipeline
# names, labels), and a list's items are checked against the schema of the list's key.

Schema = dict[str, "Schema | None"]
ANY_KEY = "*"


def _keys(*names: str) -> Schema:
    return dict.fromkeys(names)


def unknown_key_paths(node: object, schema: Schema | None, path: str = "") -> list[str]:
    """The dotted path of every key in ``node`` that ``schema`` does not allow."""
    if schema is None:
        return []
    if isinstance(node, list):
        return [
            unknown
            for index, item in enumerate(node)
            for unknown in unknown_key_paths(item, schema, f"{path}[{index}]")
        ]
    if not isinstance(node, dict):
        return []
    unknown: list[str] = []
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        if key in schema:
            unknown += unknown_key_paths(value, schema[key], where)
        elif ANY_KEY in schema:
            unknown += unknown_key_paths(value, schema[ANY_KEY], where)
        else:
            unknown.append(where)
    return unknown


# Collector 0.144.0 (opentelemetry-collector v0.144.0 / contrib v0.144.0).
# config/configtls/configtls.go: ClientConfig/ServerConfig (Config squashed into both).
_TLS = _keys(
    "ca_file",
    "ca_pem",
    "include_system_ca_certs_pool",
    "cert_file",
    "cert_pem",
    "key_file",
    "key_pem",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "reload_interval",
    "tpm_config",
)
_TLS_CLIENT: Schema = {
    **_TLS,
    **_keys("insecure", "insecure_skip_verify", "server_name_override"),
}
_TLS_SERVER: Schema = {**_TLS, **_keys("client_ca_file", "client_ca_file_reload")}
# config/configgrpc/configgrpc.go: ServerConfig.
_GRPC_SERVER: Schema = {
    **_keys(
        "endpoint",
        "transport",
        "max_recv_msg_size_mib",
        "max_concurrent_streams",
        "read_buffer_size",
        "write_buffer_size",
        "keepalive",
        "auth",
        "include_metadata",
        "middlewares",
    ),
    "tls": _TLS_SERVER,
}
# config/confighttp/confighttp.go: ServerConfig.
_HTTP_SERVER: Schema = {
    **_keys(
        "endpoint",
        "cors",
        "auth",
        "max_request_body_size",
        "include_metadata",
        "response_headers",
        "compression_algorithms",
        "read_timeout",
        "read_header_timeout",
        "write_timeout",
        "idle_timeout",
        "keepalives_enabled",
        "middlewares",
    ),
    "tls": _TLS_SERVER,
}
# config/configgrpc/configgrpc.go: ClientConfig.
_GRPC_CLIENT: Schema = {
    **_keys(
        "endpoint",
        "compression",
        "read_buffer_size",
        "write_buffer_size",
        "wait_for_ready",
        "headers",
        "balancer_name",
        "authority",
        "auth",
        "middlewares",
    ),
    "tls": _TLS_CLIENT,
    "keepalive": _keys("time", "timeout", "permit_without_stream"),
}
# config/configretry/backoff.go: BackOffConfig.
_RETRY = _keys(
    "enabled",
    "initial_interval",
    "randomization_factor",
    "multiplier",
    "max_interval",
    "max_elapsed_time",
)
# exporter/exporterhelper/internal/queuebatch/config.go: Config and BatchConfig, in a
# configoptional.Optional (hence `enabled`).
_SENDING_QUEUE: Schema = {
    **_keys(
        "enabled",
        "wait_for_result",
        "sizer",
        "queue_size",
        "block_on_overflow",
        "storage",
        "num_consumers",
    ),
    "batch": {
        **_keys("flush_timeout", "sizer", "min_size", "max_size"),
        "partition": _keys("metadata_keys"),
    },
}
COLLECTOR_COMPONENT_SCHEMAS: dict[str, dict[str, Schema]] = {
    "receivers": {
        # receiver/otlpreceiver/config.go: Protocols, HTTPConfig (ServerConfig squashed).
        "otlp": {
            "protocols": {
                "grpc": _GRPC_SERVER,
                "http": {
                    **_HTTP_SERVER,
                    **_keys(
                        "traces_url_path",
                        "metrics_url_path",
                        "logs_url_path",
                        "profiles_url_path",
                    ),
                },
            }
        },
    },
    "processors": {
        # processor/memorylimiterprocessor -> internal/memorylimiter/config.go.
        "memory_limiter": _keys(
            "check_interval",
            "limit_mib",
            "spike_limit_mib",
            "limit_percentage",
            "spike_limit_percentage",
            "min_gc_interval_when_soft_limited",
            "min_gc_interval_when_hard_limited",
        ),
        # processor/batchprocessor/config.go.
        "batch": _keys(
            "timeout",
            "send_batch_size",
            "send_batch_max_size",
            "metadata_keys",
            "metadata_cardinality_limit",
        ),
        # contrib processor/attributesprocessor/config.go (MatchConfig) and
        # internal/coreinternal/attraction/attraction.go (ActionKeyValue).
        "attributes": {
            "actions": _keys(
                "key",
                "value",
                "pattern",
                "from_attribute",
                "from_context",
                "converted_type",
                "action",
            ),
            "include": None,
            "exclude": None,
        },
    },
    "exporters": {
        # exporter/otlpexporter/config.go: TimeoutConfig, QueueConfig, RetryConfig and
        # configgrpc.ClientConfig (squashed).
        "otlp_grpc": {
            **_GRPC_CLIENT,
            "timeout": None,
            "sending_queue": _SENDING_QUEUE,
            "retry_on_failure": _RETRY,
        },
    },
    "extensions": {
        # contrib extension/healthcheckextension/config.go (confighttp.ServerConfig
        # squashed).
        "health_check": {
            **_HTTP_SERVER,
            **_keys("path", "response_body", "check_collector_pipeline"),
        },
        # contrib extension/storage/filestorage/config.go.
        "file_storage": {
            **_keys(
                "directory",
                "timeout",
                "fsync",
                "create_directory",
                "directory_permissions",
                "recreate",
            ),
            "compaction": _keys(
                "on_start",
                "on_rebound",
                "directory",
                "max_transaction_size",
                "rebound_needed_threshold_mib",
                "rebound_trigger_threshold_mib",
                "check_interval",
                "cleanup_on_start",
            ),
        },
    },
}
# service/config.go, service/pipelines/config.go and service/telemetry/otelconftelemetry
# (config.go: LogsConfig, MetricsConfig; the readers follow the OTel configuration
# schema, go.opentelemetry.io/contrib/otelconf: PullMetricReader, Prometheus).
COLLECTOR_SERVICE_SCHEMA: Schema = {
    "extensions": None,
    "pipelines": {ANY_KEY: _keys("receivers", "processors", "exporters")},
    "telemetry": {
        "logs": _keys(
            "level",
            "development",
            "encoding",
            "disable_caller",
            "disable_stacktrace",
            "sampling",
            "output_paths",
            "error_output_paths",
            "initial_fields",
            "processors",
        ),
        "metrics": {
            "level": None,
            "views": None,
            "readers": {
                "periodic": None,
                "pull": {
                    "exporter": {
                        "prometheus": _keys(
                            "host",
                            "port",
                            "without_units",
                            "without_type_suffix",
                            "without_scope_info",
                            "with_resource_constant_labels",
                            "translation_strategy",
                        )
                    }
                },
            },
        },
        "traces": None,
        "resource": None,
    },
}


# Tempo 2.10.x (grafana/tempo at v2.10.x). dskit ring/lifecycler.go: LifecyclerConfig;
# ring/ring.go: Config.
_TEMPO_LIFECYCLER: Schema = {
    **_keys(
        "num_tokens",
        "heartbeat_period",
        "heartbeat_timeout",
        "observe_period",
        "join_after",
        "min_ready_duration",
        "interface_names",
        "enable_inet6",
        "final_sleep",
        "tokens_file_path",
        "availability_zone",
        "unregister_on_shutdown",
        "readiness_check_ring_health",
        "address",
        "port",
        "id",
    ),
    "ring": _keys(
        "kvstore",
        "heartbeat_timeout",
        "replication_factor",
        "zone_awareness_enabled",
        "excluded_zones",
    ),
}
# The prometheus/config RemoteWriteConfig Tempo vendors (HTTPClientConfig inlined).
_REMOTE_WRITE = _keys(
    "url",
    "remote_timeout",
    "headers",
    "write_relabel_configs",
    "name",
    "send_exemplars",
    "send_native_histograms",
    "round_robin_dns",
    "protobuf_message",
    "queue_config",
    "metadata_config",
    "sigv4",
    "azuread",
    "google_iam",
    "basic_auth",
    "authorization",
    "oauth2",
    "tls_config",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "follow_redirects",
    "enable_http2",
    "http_headers",
)
TEMPO_BLOCK_SCHEMAS: dict[str, Schema] = {
    # dskit server/server.go: Config (the keys this stack might set).
    "server": _keys(
        "http_listen_network",
        "http_listen_address",
        "http_listen_port",
        "http_listen_conn_limit",
        "grpc_listen_network",
        "grpc_listen_address",
        "grpc_listen_port",
        "grpc_listen_conn_limit",
        "register_instrumentation",
        "graceful_shutdown_timeout",
        "http_server_read_timeout",
        "http_server_read_header_timeout",
        "http_server_write_timeout",
        "http_server_idle_timeout",
        "grpc_server_max_recv_msg_size",
        "grpc_server_max_send_msg_size",
        "grpc_server_max_concurrent_streams",
        "log_format",
        "log_level",
        "log_source_ips_enabled",
        "log_request_headers",
        "log_request_at_info_level_enabled",
        "http_path_prefix",
    ),
    # modules/distributor/config.go; receivers are OTel receiver configs (the OTLP one
    # is otlpreceiver's, shared with the collector schema above).
    "distributor": {
        **_keys(
            "ring",
            "log_received_spans",
            "log_discarded_spans",
            "metric_received_spans",
            "forwarders",
            "extend_writes",
            "retry_after_on_resource_exhausted",
            "usage",
            "max_attribute_bytes",
        ),
        "receivers": {
            "otlp": COLLECTOR_COMPONENT_SCHEMAS["receivers"]["otlp"],
            "jaeger": None,
            "zipkin": None,
            "kafka": None,
        },
    },
    # modules/ingester/config.go.
    "ingester": {
        "lifecycler": _TEMPO_LIFECYCLER,
        **_keys(
            "concurrent_flushes",
            "flush_check_period",
            "flush_op_timeout",
            "trace_idle_period",
            "max_block_duration",
            "max_block_bytes",
            "complete_block_timeout",
            "override_ring_key",
            "flush_all_on_shutdown",
        ),
    },
    # modules/compactor/config.go and tempodb/config.go: CompactorConfig.
    "compactor": {
        "ring": None,
        "override_ring_key": None,
        "compaction": _keys(
            "chunk_size_bytes",
            "flush_size_bytes",
            "compaction_window",
            "max_compaction_objects",
            "max_block_bytes",
            "block_retention",
            "compacted_block_retention",
            "retention_concurrency",
            "iterator_buffer_size",
            "max_time_per_tenant",
            "compaction_cycle",
        ),
    },
    # modules/generator/config.go, registry/config.go and storage/config.go.
    "metrics_generator": {
        **_keys(
            "ring",
            "processor",
            "traces_storage",
            "traces_query_storage",
            "metrics_ingestion_time_range_slack",
            "query_timeout",
            "override_ring_key",
            "codec",
            "disable_local_blocks",
            "disable_grpc",
            "instance_id",
        ),
        "registry": _keys(
            "collection_interval",
            "stale_duration",
            "external_labels",
            "inject_tenant_id_as",
            "max_label_name_length",
            "max_label_value_length",
        ),
        "storage": {
            **_keys("path", "wal", "remote_write_flush_deadline", "remote_write_add_org_id_header"),
            "remote_write": _REMOTE_WRITE,
        },
    },
    # modules/storage/config.go (trace: tempodb.Config in tempodb/config.go), with
    # tempodb/wal/wal.go: Config and tempodb/backend/local/config.go: Config.
    "storage": {
        "trace": {
            **_keys(
                "pool",
                "block",
                "search",
                "blocklist_poll",
                "blocklist_poll_concurrency",
                "blocklist_poll_fallback",
                "blocklist_poll_tenant_index_builders",
                "blocklist_poll_stale_tenant_index",
                "blocklist_poll_jitter_ms",
                "backend",
                "gcs",
                "s3",
                "azure",
                "cache",
                "cache_min_compaction_level",
                "cache_max_block_age",
                "background_cache",
                "memcached",
                "redis",
            ),
            "wal": _keys(
                "path",
                "v2_encoding",
                "search_encoding",
                "ingestion_time_range_slack",
                "version",
            ),
            "local": _keys("path"),
        }
    },
    # modules/overrides/config.go: Config; Overrides in the 2.3+ (non-legacy) format.
    "overrides": {
        **_keys(
            "per_tenant_override_config",
            "per_tenant_override_period",
            "user_configurable_overrides",
        ),
        "defaults": {
            **_keys(
                "ingestion",
                "read",
                "compaction",
                "forwarders",
                "global",
                "storage",
                "cost_attribution",
            ),
            "metrics_generator": _keys(
                "processors",
                "ring_size",
                "max_active_series",
                "collection_interval",
                "disable_collection",
                "generate_native_histograms",
                "ingestion_time_range_slack",
                "trace_id_label_name",
                "remote_write_headers",
                "processor",
            ),
        },
    },
    # cmd/tempo/app/config.go: usagestats.Config.
    "usage_report": _keys("reporting_enabled", "backoff"),
}
