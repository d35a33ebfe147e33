#!/usr/bin/env bash
#
# The ingest-engine benchmark: one run measures, side by side, over interleaved
# rounds (medians reported):
#
#   (a) agent (telemetry off) vs the framework floor (stacktools/bench/floor.py)
#   (b) full telemetry vs telemetry off
#   (c) p95/p99 on a database pre-filled with years of history vs an empty one
#   (d) users with 288 readings a day vs users with one
#   (e) p99 at 100, 400 and 800 req/s
#   (f) API auth on vs off (stacktools/bench/noauth.py)
#   (g) SQLite vs PostgreSQL, two agents on one PostgreSQL, group commit, bytes per
#       reading, and a capacity table (stacktools/bench/backends.py; needs PostgreSQL)
#
# The logic lives in stacktools/bench/agent.py; this wrapper finds the venv and passes
# every option through. Missing a target is reported, not an error: it fails only
# when it cannot measure.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly PYTHON="${REPO_ROOT}/.venv/bin/python"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--quick] [--rounds N] [--duration D] [--only a,b,c,d,e,f,g]
                      [--no-cache] [--dry-run] [--help] [driver options...]

Benchmarks the agent's ingest engine and prints six ratios with their targets:
(a) agent vs framework floor, (b) full telemetry vs off, (c) prefilled vs empty
database latency, (d) heavy vs light user cost, (e) p99 at 100/400/800 req/s,
(f) API auth on vs off; and, without a target, (g) the storage backends: SQLite vs
PostgreSQL per agent, two agents on PostgreSQL, group commit and WAL syncs, bytes per
reading, and the capacity table of docs/scaling.md.
Options are those of python -m stacktools.bench.agent, passed through unchanged.
EOF
}

err() {
  echo "bench-agent: ERROR: $*" >&2
}

main() {
  local arg
  for arg in "$@"; do
    if [[ "${arg}" == "-h" || "${arg}" == "--help" ]]; then
      usage
      if [[ -x "${PYTHON}" ]]; then
        echo
        cd "${REPO_ROOT}"
        "${PYTHON}" -m stacktools.bench.agent --help
      fi
      return 0
    fi
  done
  if [[ ! -x "${PYTHON}" ]]; then
    err "${PYTHON} not found: run scripts/test.sh to create the venv"
    return 1
  fi
  cd "${REPO_ROOT}"
  exec "${PYTHON}" -m stacktools.bench.agent "$@"
}

main "$@"
