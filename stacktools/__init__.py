"""The repository's Python tooling: it generates, checks, gates and measures the stack.

Entry points (run from the repository root; the shell wrappers live in scripts/):

- ``python -m stacktools.generate``: the generators, in order (``make generate``/``check``):
  ``runbook_links``, ``slo``, ``k6_thresholds``, ``dashboards``, ``prometheus_scale``,
  each ``python -m stacktools.generate.<name> [--check]``.
- ``python -m stacktools.check_stack``: the stack's cross-checks (``scripts/check-stack``).
- ``python3 stacktools/perf_gate.py``: the k6 performance gate (``k6/perf-gate.sh``,
  ``k6/run-load-tests.sh``); standard library only, so any python3 runs it.
- ``python -m stacktools.otlp_sink``: a real OTLP/HTTP trace receiver (tests, benchmark).
- ``python -m stacktools.bench.agent``: the ingest-engine benchmark (``scripts/bench-agent.sh``);
  ``python -m stacktools.bench.auth`` (the auth check alone) and ``python -m
  stacktools.bench.tracing`` (the span pipeline alone) measure one part each.

Shared by all of them: ``stacktools.paths`` (where everything is) and
``stacktools.compose`` (the compose file, as written or rendered).
"""
