#!/usr/bin/env bash
#
# Compares a k6 summary (k6 run --summary-export) with a committed baseline:
# p95 and p99 latency, throughput and error rate, within the baseline's tolerances.
# Exit status: 0 pass, 1 regression, 2 usage or unreadable input.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly GATE="${REPO_ROOT}/stacktools/perf_gate.py"

usage() {
  cat <<EOF_USAGE
Usage: $(basename "$0") CURRENT_SUMMARY.json BASELINE.json [--env NAME=VALUE ...]

Prints metric | baseline | current | change | limit | verdict for
http_req_duration p95/p99 (ms), throughput (iterations/s: the mix, setup()
excluded) and http_req_failed rate, and exits 1 when any metric is worse than
the baseline's tolerance allows. First it checks that the run is comparable: its
env (CURRENT_SUMMARY.env.json, written by run-load-tests.sh, or the --env pairs)
must equal the baseline's measured.env, BASE_URL aside.
Baseline schema and how to refresh one: k6/baselines/README.md.

Exit status: 0 pass, 1 regression, 2 usage or input error, or not comparable.
EOF_USAGE
}

err() {
  echo "perf-gate: error: $*" >&2
}

# The venv's interpreter when there is one; the gate needs only the standard library.
python_bin() {
  if [[ -x "${REPO_ROOT}/.venv/bin/python" ]]; then
    echo "${REPO_ROOT}/.venv/bin/python"
  elif command -v python3 >/dev/null; then
    command -v python3
  else
    err "python3 not found"
    exit 2
  fi
}

main() {
  if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    usage
    exit 0
  fi
  if [[ $# -lt 2 || "$1" == -* || "$2" == -* ]]; then
    usage >&2
    exit 2
  fi
  local current="$1" baseline="$2"
  shift 2
  local -a env_args=()
  while [[ $# -gt 0 ]]; do
    if [[ "$1" != --env || $# -lt 2 ]]; then
      usage >&2
      exit 2
    fi
    env_args+=(--env "$2")
    shift 2
  done
  local python
  python="$(python_bin)"
  exec "${python}" "${GATE}" gate "${current}" "${baseline}" "${env_args[@]}"
}

main "$@"
