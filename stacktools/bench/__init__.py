"""The ingest-engine benchmark (scripts/bench-agent.sh): ``agent`` drives parts a-f,
``backends`` part g; ``common`` is what they share; ``floor``, ``noauth`` and ``auth`` are
the servers and micro-benchmarks they compare against; ``tracing`` measures the span
pipeline alone."""
