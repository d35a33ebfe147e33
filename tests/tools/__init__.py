"""Tests of the tooling: stacktools (generators, check-stack, perf gate, OTLP sink,
benchmark), the test helpers, the docs and the mutation-test script."""
