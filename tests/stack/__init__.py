"""Tests of the stack: compose, Prometheus rules and alerts, Grafana, the trace pipeline,
k6, chaos, storage and backup scripts, and the stack brought up for real."""
