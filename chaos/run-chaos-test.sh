#!/usr/bin/env bash
#
# Chaos experiments against the NEUROS compose stack:
#   chaos/run-chaos-test.sh [--list] [--dry-run] [--report FILE] [--yes] EXPERIMENT...
#
# A thin wrapper: the runner is the stdlib-only Python package chaos/ (python3 >= 3.11),
# the experiments are the JSON files in chaos/experiments/ (or $CHAOS_EXPERIMENTS_DIR).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT

usage() {
  cat <<EOF
Usage: $(basename "$0") [--list] [--dry-run] [--steady-state-only] [--report FILE]
       [--yes] [--project NAME] [-f COMPOSE_FILE]... [--base-url URL] EXPERIMENT...

Runs each EXPERIMENT (chaos/experiments/<name>.json): steady-state hypothesis,
method, hypothesis again; rollbacks always run, also on failure, Ctrl-C or SIGTERM.
kill-replica needs the scale stack (-f docker-compose.yml -f docker-compose.scale.yml,
two or more agent replicas) and refuses, before any fault, with fewer.

Options:
  --list               one experiment per line: name, then its title
  --dry-run            print every action and probe it would run; change nothing
  --steady-state-only  only check the steady-state hypotheses: no fault, no rollback;
                       the probes still send requests, and the load probes store
                       readings of synthetic chaos-<random> users in the agent's DB
  --report FILE        write FILE.json and FILE.txt (default: chaos/reports/chaos-<time>)
  --yes                inject the faults (required unless CI=true)
  --project NAME       compose project (default: the name: of the compose file)
  -f, --compose-file   compose file(s) naming the project (default: docker-compose.yml)
  --base-url URL       the agent (default: http://127.0.0.1:\${NEUROS_PUBLISHED_PORT:-8000})
  -h, --help           show this help

Environment:
  CI                     'true': no --yes needed
  NEUROS_PUBLISHED_PORT  the agent's published port (as in .env; with the scale
                         override, the load balancer's)
  NEUROS_API_TOKEN       API token of the probes that call /v1/ (default: the file
                         secrets/neuros-admin-token, which scripts/setup.sh creates;
                         not needed for --dry-run)
  CHAOS_TC_IMAGE         image with tc for the latency experiment
  CHAOS_EXPERIMENTS_DIR  read the experiments from this directory instead
  CHAOS_*                bounds of the experiments (their "configuration" sections)

Exit status: 0 every verdict passed, 1 a verdict failed, 2 refused or usage error,
130 on SIGINT (Ctrl-C), 143 on SIGTERM (both after the rollbacks ran).
EOF
}

err() {
  echo "run-chaos-test: ERROR: $*" >&2
}

main() {
  local arg
  for arg in "$@"; do
    if [[ "${arg}" == "-h" || "${arg}" == "--help" ]]; then
      usage
      exit 0
    fi
  done
  local python="${CHAOS_PYTHON:-python3}"
  if ! "${python}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    err "${python} >= 3.11 is required (set CHAOS_PYTHON)"
    exit 2
  fi
  PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}" exec "${python}" -m chaos "$@"
}

main "$@"
