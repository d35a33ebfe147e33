"""The generators of committed files, in the order ``make generate`` runs them.

The one list of them: the Makefile's ``generate`` and ``check`` targets read it
(``python -m stacktools.generate`` prints one module name a line) and
tests/tools/test_generators.py runs every one's ``--check``. Each is ``python -m
stacktools.generate.<name>`` and takes ``--check`` (change nothing, exit 1 when a file is stale).

None of them reads a file another writes, with one exception that sets the order:
``runbook_links --base-url`` changes prometheus/runbook.yml, which ``slo`` reads for
the runbook_url of its alerts, and ``runbook_links`` rewrites every rule file,
``slo``'s output included; so ``runbook_links`` runs first and ``slo`` writes its
files last. The others read only hand-written sources.
"""

GENERATORS: tuple[str, ...] = (
    "runbook_links",  # prometheus/runbook.yml → runbook_url in prometheus/rules, tests
    "slo",  # prometheus/slo.yml, runbook.yml, neuros/metrics.py → prometheus/rules/slo-*.yml
    "k6_thresholds",  # prometheus/slo.yml → k6/lib/slo.json
    "dashboards",  # prometheus/slo.yml, neuros/metrics.py → grafana/dashboards/*.json
    "prometheus_scale",  # prometheus/prometheus.yml → prometheus/prometheus-scale.yml
)
