#!/usr/bin/env bash
#
# Disk usage report and safe cleanup for the NEUROS stack's Docker host.
#
#   report          disk of Docker's data dir, `docker system df`, this stack's named
#                   volumes, the log directory, each configured retention bound, and
#                   the agent's backups (scripts/backup.sh)
#   clean           prunes stopped containers, dangling images, unused images older
#                   than --image-age, build cache older than --build-cache-age; deletes
#                   logs past retention and gzips older rotated logs
#   install-cron    writes a cron.d entry running `clean` daily at 03:00
#   uninstall-cron  removes it
#
# Safe by construction: the stack's data lives only in named volumes, and this
# script never runs `docker volume prune`, `docker volume rm` or `docker system
# prune` (so never `--volumes` nor `-a` on one). Only `container prune`, `image
# prune` and `builder prune` are issued, none of which touches a volume.

set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "${SCRIPT_PATH}")/.." && pwd)"
readonly SCRIPT_PATH REPO_ROOT
# shellcheck source=scripts/lib/cron.sh
source "${REPO_ROOT}/scripts/lib/cron.sh"
readonly CRON_MARKER="# managed by neuros storage-management.sh"
readonly CRON_LOG_NAME="storage-cleanup.log"
readonly METRIC_PREFIX="neuros_storage_cleanup"

COMMAND=""
LOG_DIR="/var/log/neuros"
LOG_RETENTION_DAYS=14
IMAGE_AGE="240h"
BUILD_CACHE_AGE="168h"
METRICS_FILE=""
LOCK_FILE=""
CRON_FILE="/etc/cron.d/neuros-storage"
DRY_RUN=false
JSON=false
PROJECT="${COMPOSE_PROJECT_NAME:-neuros}"
BACKUP_DIR="${NEUROS_BACKUP_DIR:-/var/backups/neuros}"

# Set by clean.
RECLAIMED_BYTES=0
FAILED=false
DOCKER_ERROR=""

usage() {
  cat <<EOF
Usage: $(basename "$0") COMMAND [options]

Commands:
  report          show disk usage (Docker data filesystem, docker system df, the
                  stack's named volumes, the log dir), configured retention bounds
                  and the agent's backups
  clean           prune stopped containers, dangling and old unused images, old build
                  cache; delete old logs, gzip old rotated logs. Never touches volumes.
  install-cron    write a cron.d entry running 'clean' daily at 03:00 as root
  uninstall-cron  remove that entry

Options:
  --log-dir DIR             log directory (default /var/log/neuros)
  --log-retention-days N    delete log files older than N days (default 14)
  --image-age DUR           prune unused images older than DUR (default 240h)
  --build-cache-age DUR     prune build cache older than DUR (default 168h)
  --metrics-file PATH       clean: write a node-exporter textfile-collector file
  --lock-file PATH          clean: lock file (default /run/lock/neuros-storage.lock,
                            or \${TMPDIR:-/tmp}/neuros-storage.lock)
  --cron-file PATH          cron.d file (default /etc/cron.d/neuros-storage)
  --backup-dir DIR          report: the backups' folder (default \$NEUROS_BACKUP_DIR or
                            /var/backups/neuros, as scripts/backup.sh)
  --json                    report: machine-readable JSON
  --dry-run                 print what would be done, change nothing
  -h, --help                show this help

Environment:
  COMPOSE_PROJECT_NAME      compose project whose volumes are reported (default neuros)
EOF
}

err() {
  echo "storage-management: ERROR: $*" >&2
}

warn() {
  echo "storage-management: WARNING: $*" >&2
}

die() {
  err "$@"
  exit 1
}

log() {
  echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') $*"
}

need_value() {
  [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
}

parse_args() {
  while (($# > 0)); do
    case "$1" in
      report | clean | install-cron | uninstall-cron)
        [[ -z "${COMMAND}" ]] || die "only one command allowed (got ${COMMAND} and $1)"
        COMMAND="$1"; shift ;;
      --log-dir) need_value "$@"; LOG_DIR="$2"; shift 2 ;;
      --log-retention-days) need_value "$@"; LOG_RETENTION_DAYS="$2"; shift 2 ;;
      --image-age) need_value "$@"; IMAGE_AGE="$2"; shift 2 ;;
      --build-cache-age) need_value "$@"; BUILD_CACHE_AGE="$2"; shift 2 ;;
      --metrics-file) need_value "$@"; METRICS_FILE="$2"; shift 2 ;;
      --lock-file) need_value "$@"; LOCK_FILE="$2"; shift 2 ;;
      --cron-file) need_value "$@"; CRON_FILE="$2"; shift 2 ;;
      --backup-dir) need_value "$@"; BACKUP_DIR="$2"; shift 2 ;;
      --json) JSON=true; shift ;;
      --dry-run) DRY_RUN=true; shift ;;
      -h | --help) usage; exit 0 ;;
      *) err "unknown argument: $1"; usage >&2; exit 2 ;;
    esac
  done
  [[ -n "${COMMAND}" ]] || { err "missing command"; usage >&2; exit 2; }
  [[ "${LOG_RETENTION_DAYS}" =~ ^[1-9][0-9]*$ ]] \
    || die "--log-retention-days must be a positive integer, got '${LOG_RETENTION_DAYS}'"
  local go_duration='^([0-9]+(h|m|s))+$'
  [[ "${IMAGE_AGE}" =~ ${go_duration} ]] || die "--image-age must look like 240h"
  [[ "${BUILD_CACHE_AGE}" =~ ${go_duration} ]] || die "--build-cache-age must look like 168h"
  if [[ -z "${LOCK_FILE}" ]]; then
    if [[ -d /run/lock && -w /run/lock ]]; then
      LOCK_FILE="/run/lock/neuros-storage.lock"
    else
      LOCK_FILE="${TMPDIR:-/tmp}/neuros-storage.lock"
    fi
  fi
}

# --- Helpers --------------------------------------------------------------------------

# Prints a command, shell-quoted, prefixed with "would run:".
show() {
  local quoted
  quoted="$(printf '%q ' "$@")"
  echo "would run: ${quoted% }"
}

# Bytes in a docker size such as 1.5MB, 512kB, 2GiB, 0B (decimal units, as docker
# prints them; binary ones accepted too). Prints 0 for anything unparsable.
to_bytes() {
  awk -v s="$1" 'BEGIN {
    if (match(s, /^[0-9]+(\.[0-9]+)?/) == 0) { print 0; exit }
    n = substr(s, 1, RLENGTH); u = toupper(substr(s, RLENGTH + 1)); gsub(/[ \t]/, "", u)
    m = 1
    if (u ~ /^K/) m = 1e3; else if (u ~ /^M/) m = 1e6; else if (u ~ /^G/) m = 1e9
    else if (u ~ /^T/) m = 1e12
    if (u ~ /I/) { if (m == 1e3) m = 1024; else if (m == 1e6) m = 1048576;
      else if (m == 1e9) m = 1073741824; else if (m == 1e12) m = 1099511627776 }
    printf "%.0f\n", n * m
  }'
}

human_bytes() {
  awk -v b="$1" 'BEGIN {
    split("B kB MB GB TB", u, " "); i = 1
    while (b >= 1000 && i < 5) { b /= 1000; i++ }
    if (i == 1) printf "%dB\n", b; else printf "%.1f%s\n", b, u[i]
  }'
}

# JSON string literal of $1 (or null when $1 is empty and $2 is "nullable").
json_str() {
  local s="$1"
  if [[ -z "${s}" && "${2:-}" == "nullable" ]]; then
    printf 'null'
    return
  fi
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\t'/\\t}"
  s="${s//$'\r'/\\r}"
  printf '"%s"' "${s}"
}

json_num() {
  if [[ "$1" =~ ^[0-9]+$ ]]; then printf '%s' "$1"; else printf 'null'; fi
}

# True when a docker CLI exists and its daemon answers; else sets DOCKER_ERROR.
docker_reachable() {
  if ! command -v docker >/dev/null 2>&1; then
    DOCKER_ERROR="docker is not installed (no 'docker' on PATH)"
    return 1
  fi
  local out
  if ! out="$(docker info --format '{{.ServerVersion}}' 2>&1)"; then
    DOCKER_ERROR="cannot reach the Docker daemon: $(printf '%s' "${out}" | head -n 1)"
    return 1
  fi
  return 0
}

# The nearest existing ancestor of a path (df needs an existing one).
existing_path() {
  local p="$1"
  while [[ ! -e "${p}" && "${p}" != "/" ]]; do
    p="$(dirname "${p}")"
  done
  printf '%s\n' "${p}"
}

# The env file's name relative to the repo root, or "no .env" when there is none.
env_file_name() {
  local file
  if file="$(env_file)"; then printf '%s\n' "${file#"${REPO_ROOT}/"}"; else echo "no .env"; fi
}

# The env file compose reads variables from: .env at the repo root (compose's default),
# else .env.example (what `--env-file .env.example` gives, as the tests run it). One
# file, as compose: a variable .env lacks is unset even if .env.example sets it.
env_file() {
  local file
  for file in "${REPO_ROOT}/.env" "${REPO_ROOT}/.env.example"; do
    if [[ -f "${file}" ]]; then
      printf '%s\n' "${file}"
      return 0
    fi
  done
  return 1
}

# Value of VAR in the env file, as compose's dotenv parser reads it: `export ` prefix
# allowed, the last assignment wins, 'single quotes' literal, "double quotes" stripped,
# an unquoted value ends at ` #` (comment) and is trimmed. Status 1 when VAR is not
# assigned there (unset); an empty assignment prints nothing and succeeds (set, empty).
env_lookup() {
  local name="$1" file line value
  file="$(env_file)" || return 1
  line="$(grep -E "^[[:space:]]*(export[[:space:]]+)?${name}[[:space:]]*=" "${file}" \
    | tail -n 1 || true)"
  [[ -n "${line}" ]] || return 1
  value="${line#*=}"
  value="${value#"${value%%[![:space:]]*}"}"
  if [[ "${value}" == \'* ]]; then
    value="${value#\'}"; value="${value%%\'*}"
  elif [[ "${value}" == \"* ]]; then
    value="${value#\"}"; value="${value%%\"*}"
  else
    value="${value%%[[:space:]]#*}"
    value="${value%"${value##*[![:space:]]}"}"
  fi
  printf '%s\n' "${value}"
}

# $1 with compose's variable interpolation done, from the env file (env_lookup):
# $VAR and ${VAR} (empty when unset), ${VAR:-default} (default when unset or empty),
# ${VAR-default} (default when unset), ${VAR:?message} (error when unset or empty),
# ${VAR?message} (error when unset), ${VAR:+alt} and ${VAR+alt} (alt when set and
# non-empty, or when set), and $$ for a literal $. A default may itself hold $VAR or
# ${VAR}. A required variable without a value: prints compose's error message instead
# and returns 1.
interpolate() {
  local rest="$1" out="" name op word value is_set braced
  braced='^\{([A-Za-z_][A-Za-z0-9_]*)((:?[-?+])(([^{}]|\$\{[^{}]*\})*))?\}(.*)$'
  while [[ "${rest}" == *'$'* ]]; do
    out+="${rest%%\$*}"
    rest="${rest#*\$}"
    if [[ "${rest}" == '$'* ]]; then
      out+='$'
      rest="${rest#\$}"
      continue
    fi
    if [[ "${rest}" =~ ${braced} ]]; then
      name="${BASH_REMATCH[1]}"; op="${BASH_REMATCH[3]}"; word="${BASH_REMATCH[4]}"
      rest="${BASH_REMATCH[6]}"
    elif [[ "${rest}" =~ ^([A-Za-z_][A-Za-z0-9_]*)(.*)$ ]]; then
      name="${BASH_REMATCH[1]}"; op=""; word=""; rest="${BASH_REMATCH[2]}"
    else
      out+='$'
      continue
    fi
    is_set=true
    value="$(env_lookup "${name}")" || is_set=false
    case "${op}" in
      :-) [[ -n "${value}" ]] || value="$(interpolate "${word}")" || { echo "${value}"; return 1; } ;;
      -) [[ "${is_set}" == true ]] || value="$(interpolate "${word}")" || { echo "${value}"; return 1; } ;;
      :+ | +)
        if [[ -n "${value}" || ("${op}" == "+" && "${is_set}" == true) ]]; then
          value="$(interpolate "${word}")" || { echo "${value}"; return 1; }
        fi
        ;;
      :? | \?)
        if [[ "${is_set}" != true || ("${op}" == ":?" && -z "${value}") ]]; then
          echo "${word:-required variable ${name} is missing a value}"
          return 1
        fi
        ;;
    esac
    out+="${value}"
  done
  printf '%s\n' "${out}${rest}"
}

tempo_block_retention() {
  local file="${REPO_ROOT}/tempo/tempo.yml"
  [[ -f "${file}" ]] || return 0
  grep -E '^[[:space:]]*block_retention:' "${file}" | head -n 1 \
    | sed -E 's/^[^:]*:[[:space:]]*//; s/[[:space:]]*(#.*)?$//; s/^"(.*)"$/\1/' || true
}

# Raw values of a key in docker-compose.yml (`key: value` lines, or `- key=value` list
# items such as a command flag), quotes and trailing comments stripped; one per line.
compose_raw_values() {
  local key="$1" file="${REPO_ROOT}/docker-compose.yml" escaped
  [[ -f "${file}" ]] || return 0
  escaped="$(printf '%s' "${key}" | sed 's/[.[\*^$]/\\&/g')"
  local unquote='s/[[:space:]]+#.*$//; s/[[:space:]]*$//; s/^"(.*)"$/\1/; s/^'\''(.*)'\''$/\1/'
  grep -E "^[[:space:]]*[\"']?${escaped}[\"']?:[[:space:]]" "${file}" \
    | sed -E "s/^[^:]*:[[:space:]]*//; ${unquote}" || true
  grep -E "^[[:space:]]*-[[:space:]]*[\"']?${escaped}=" "${file}" \
    | sed -E "s/^[[:space:]]*-[[:space:]]*//; ${unquote}; s/^[^=]*=//" || true
}

# The values a compose setting takes once interpolated (compose_raw_values, then
# interpolate), distinct and comma-separated; nothing when the key is absent. A
# required variable without a value prints "unset (compose refuses to start: MESSAGE)"
# instead, or nothing with $2 = json (the JSON report's null).
compose_setting() {
  local key="$1" style="${2:-text}" raw value values=() seen=" "
  while IFS= read -r raw; do
    if ! value="$(interpolate "${raw}")"; then
      [[ "${style}" == json ]] || printf 'unset (compose refuses to start: %s)\n' "${value}"
      return 0
    fi
    [[ "${seen}" != *" ${value} "* ]] || continue
    seen+="${value} "
    values+=("${value}")
  done < <(compose_raw_values "${key}")
  ((${#values[@]} > 0)) || return 0
  (IFS=,; printf '%s\n' "${values[*]}")
}

# Volume name -> size, from the "VOLUME NAME ... SIZE" table of `docker system df -v`.
volume_size() {
  local name="$1" table="$2" size="" mountpoint
  size="$(awk -v n="${name}" '
    /^VOLUME NAME/ { in_table = 1; next }
    in_table && NF == 0 { in_table = 0 }
    in_table && $1 == n { print $NF; exit }' <<<"${table}")"
  if [[ -z "${size}" ]]; then
    mountpoint="$(docker volume inspect --format '{{.Mountpoint}}' "${name}" 2>/dev/null || true)"
    if [[ -n "${mountpoint}" && -r "${mountpoint}" ]]; then
      size="$(du -sh "${mountpoint}" 2>/dev/null | cut -f1 || true)"
    fi
  fi
  printf '%s\n' "${size:-unknown}"
}

# The backups' listing from the backup tool (`list`, or `list --json` with $1 = json).
backup_listing() {
  local format=()
  [[ "${1:-}" != json ]] || format=(--json)
  if ! command -v python3 >/dev/null 2>&1; then
    echo "unavailable: python3 not found (the backup tool needs it)" >&2
    return 1
  fi
  (cd "${REPO_ROOT}" && PYTHONPATH="${REPO_ROOT}" python3 -m neuros.backup list \
    --backup-dir "${BACKUP_DIR}" "${format[@]}")
}

# --- report ---------------------------------------------------------------------------

cmd_report() {
  local docker_ok=false root_dir="/var/lib/docker" df_path df_human df_line
  local system_df_v="" volumes=() vol
  if docker_reachable; then
    docker_ok=true
    root_dir="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)"
    [[ -n "${root_dir}" ]] || root_dir="/var/lib/docker"
    system_df_v="$(docker system df -v 2>/dev/null || true)"
    mapfile -t volumes < <(docker volume ls -q \
      --filter "label=com.docker.compose.project=${PROJECT}" 2>/dev/null || true)
  else
    err "Docker part skipped: ${DOCKER_ERROR}"
  fi
  df_path="$(existing_path "${root_dir}")"
  df_human="$(df -h "${df_path}" 2>/dev/null || true)"
  df_line="$(df -P -B1 "${df_path}" 2>/dev/null | tail -n 1 || true)"

  local log_exists=false log_bytes="" log_human="-"
  if [[ -d "${LOG_DIR}" ]]; then
    log_exists=true
    log_bytes="$(du -sb "${LOG_DIR}" 2>/dev/null | cut -f1 || true)"
    log_human="$(du -sh "${LOG_DIR}" 2>/dev/null | cut -f1 || true)"
  fi

  # The values in force: docker-compose.yml's settings, interpolated from the env file
  # as compose does (text: a required variable without a value says so; JSON: null).
  local prom_time prom_size tempo_ret log_max_size log_max_file style=text
  [[ "${JSON}" != true ]] || style=json
  prom_time="$(compose_setting --storage.tsdb.retention.time "${style}")"
  prom_size="$(compose_setting --storage.tsdb.retention.size "${style}")"
  tempo_ret="$(tempo_block_retention)"
  log_max_size="$(compose_setting max-size "${style}")"
  log_max_file="$(compose_setting max-file "${style}")"

  if [[ "${JSON}" == true ]]; then
    local fs_dev="" fs_size="" fs_used="" fs_avail="" fs_mount="" first=true line
    if [[ -n "${df_line}" ]]; then
      read -r fs_dev fs_size fs_used fs_avail _ fs_mount <<<"${df_line}"
    fi
    printf '{\n  "docker": {"available": %s, "error": %s, "root_dir": %s, "system_df": [' \
      "${docker_ok}" "$(json_str "${DOCKER_ERROR}" nullable)" "$(json_str "${root_dir}")"
    if [[ "${docker_ok}" == true ]]; then
      while IFS= read -r line; do
        [[ "${line}" == \{*\} ]] || continue
        [[ "${first}" == true ]] || printf ','
        first=false
        printf '\n    %s' "${line}"
      done < <(docker system df --format '{{json .}}' 2>/dev/null || true)
    fi
    printf ']},\n'
    printf '  "filesystem": {"path": %s, "device": %s, "mountpoint": %s, ' \
      "$(json_str "${df_path}")" "$(json_str "${fs_dev}" nullable)" \
      "$(json_str "${fs_mount}" nullable)"
    printf '"size_bytes": %s, "used_bytes": %s, "avail_bytes": %s},\n' \
      "$(json_num "${fs_size}")" "$(json_num "${fs_used}")" "$(json_num "${fs_avail}")"
    printf '  "project": %s,\n  "volumes": [' "$(json_str "${PROJECT}")"
    first=true
    for vol in "${volumes[@]}"; do
      [[ -n "${vol}" ]] || continue
      local size size_bytes=null
      size="$(volume_size "${vol}" "${system_df_v}")"
      [[ "${size}" == unknown ]] || size_bytes="$(to_bytes "${size}")"
      [[ "${first}" == true ]] || printf ','
      first=false
      printf '\n    {"name": %s, "size": %s, "size_bytes": %s}' "$(json_str "${vol}")" \
        "$(json_str "${size}")" "${size_bytes}"
    done
    printf '],\n'
    printf '  "log_dir": {"path": %s, "exists": %s, "size_bytes": %s},\n' \
      "$(json_str "${LOG_DIR}")" "${log_exists}" "$(json_num "${log_bytes}")"
    printf '  "retention": {"prometheus_retention_time": %s, "prometheus_retention_size": %s, ' \
      "$(json_str "${prom_time}" nullable)" "$(json_str "${prom_size}" nullable)"
    printf '"tempo_block_retention": %s, "log_max_size": %s, "log_max_file": %s},\n' \
      "$(json_str "${tempo_ret}" nullable)" "$(json_str "${log_max_size}" nullable)" \
      "$(json_str "${log_max_file}" nullable)"
    local backups
    backups="$(backup_listing json 2>/dev/null)" || backups=null
    printf '  "backups": {"dir": %s, "archives": %s}\n}\n' "$(json_str "${BACKUP_DIR}")" \
      "${backups:-null}"
    return 0
  fi

  echo "== Filesystem holding Docker's data (${root_dir}) =="
  if [[ -n "${df_human}" ]]; then echo "${df_human}"; else echo "df failed for ${df_path}"; fi
  echo
  echo "== Docker disk usage (docker system df) =="
  if [[ "${docker_ok}" == true ]]; then
    docker system df 2>&1 || true
  else
    echo "unavailable: ${DOCKER_ERROR}"
  fi
  echo
  echo "== Named volumes of compose project '${PROJECT}' =="
  if [[ "${docker_ok}" != true ]]; then
    echo "unavailable: ${DOCKER_ERROR}"
  elif ((${#volumes[@]} == 0)); then
    echo "none found"
  else
    for vol in "${volumes[@]}"; do
      [[ -n "${vol}" ]] || continue
      printf '  %-40s %s\n' "${vol}" "$(volume_size "${vol}" "${system_df_v}")"
    done
  fi
  echo
  echo "== Log directory =="
  if [[ "${log_exists}" == true ]]; then
    printf '  %-40s %s (files older than %s days are deleted by clean)\n' \
      "${LOG_DIR}" "${log_human}" "${LOG_RETENTION_DAYS}"
  else
    printf '  %-40s does not exist\n' "${LOG_DIR}"
  fi
  echo
  echo "== Configured retention bounds (docker-compose.yml with $(env_file_name)) =="
  printf '  %-40s %s\n' "Prometheus retention time" "${prom_time:-not set}"
  printf '  %-40s %s\n' "Prometheus retention size" "${prom_size:-not set}"
  printf '  %-40s %s\n' "Tempo block_retention" "${tempo_ret:-not set}"
  printf '  %-40s %s\n' "Container logs json-file max-size" "${log_max_size:-not set}"
  printf '  %-40s %s\n' "Container logs json-file max-file" "${log_max_file:-not set}"
  echo
  echo "== Backups in ${BACKUP_DIR} (scripts/backup.sh) =="
  backup_listing 2>&1 | sed 's/^/  /' || true
}

# --- clean ----------------------------------------------------------------------------

# Runs one prune command (only ever container/image/builder prune), logging what it
# reclaimed; a failure marks the run failed and the cleanup goes on.
prune() {
  if [[ "${DRY_RUN}" == true ]]; then
    show docker "$@"
    return 0
  fi
  local out size bytes
  log "running: docker $*"
  if ! out="$(docker "$@" 2>&1)"; then
    err "docker $* failed: $(printf '%s' "${out}" | tail -n 3 | tr '\n' ' ')"
    FAILED=true
    return 0
  fi
  size="$(printf '%s\n' "${out}" \
    | sed -nE 's/^[[:space:]]*Total( reclaimed space)?:[[:space:]]*([0-9.]+[[:space:]]*[A-Za-z]*).*$/\2/p' \
    | tail -n 1)"
  bytes="$(to_bytes "${size:-0B}")"
  RECLAIMED_BYTES=$((RECLAIMED_BYTES + bytes))
  log "docker $*: reclaimed ${size:-0B} (${bytes} bytes)"
}

clean_docker() {
  if ! docker_reachable; then
    err "Docker cleanup skipped: ${DOCKER_ERROR}"
    FAILED=true
    return 0
  fi
  prune container prune -f
  prune image prune -f
  # -a on image prune only: unused tagged images older than the threshold. Images in
  # use by any container (running or stopped) are never removed; volumes never are.
  prune image prune -a -f --filter "until=${IMAGE_AGE}"
  prune builder prune -f --filter "until=${BUILD_CACHE_AGE}"
}

clean_logs() {
  if [[ ! -d "${LOG_DIR}" ]]; then
    log "log dir ${LOG_DIR} does not exist: nothing to clean"
    return 0
  fi
  local minutes=$((LOG_RETENTION_DAYS * 1440)) file size before after freed=0 count=0
  while IFS= read -r -d '' file; do
    size="$(stat -c %s -- "${file}" 2>/dev/null || echo 0)"
    if [[ "${DRY_RUN}" == true ]]; then
      echo "would delete: ${file} (${size} bytes, older than ${LOG_RETENTION_DAYS} days)"
      continue
    fi
    if rm -f -- "${file}"; then
      freed=$((freed + size)); count=$((count + 1))
    else
      err "could not delete ${file}"; FAILED=true
    fi
  done < <(find "${LOG_DIR}" -type f -mmin "+${minutes}" -print0)
  if [[ "${DRY_RUN}" != true ]]; then
    log "deleted ${count} log file(s) older than ${LOG_RETENTION_DAYS} days in ${LOG_DIR}:" \
      "reclaimed $(human_bytes "${freed}") (${freed} bytes)"
    RECLAIMED_BYTES=$((RECLAIMED_BYTES + freed))
  fi

  freed=0; count=0
  while IFS= read -r -d '' file; do
    before="$(stat -c %s -- "${file}" 2>/dev/null || echo 0)"
    if [[ "${DRY_RUN}" == true ]]; then
      echo "would compress: ${file} (${before} bytes)"
      continue
    fi
    if gzip -f -- "${file}"; then
      after="$(stat -c %s -- "${file}.gz" 2>/dev/null || echo 0)"
      freed=$((freed + before - after)); count=$((count + 1))
    else
      err "could not compress ${file}"; FAILED=true
    fi
  done < <(find "${LOG_DIR}" -type f -name '*.log.[0-9]*' ! -name '*.gz' -mmin +1440 -print0)
  if [[ "${DRY_RUN}" != true ]]; then
    log "compressed ${count} rotated log file(s) in ${LOG_DIR}:" \
      "reclaimed $(human_bytes "${freed}") (${freed} bytes)"
    RECLAIMED_BYTES=$((RECLAIMED_BYTES + freed))
  fi
}

# Writes the textfile-collector file atomically (temporary file, then rename).
write_metrics() {
  local now="$1" success="$2" last_success="" tmp
  if [[ "${success}" == 1 ]]; then
    last_success="${now}"
  elif [[ -f "${METRICS_FILE}" ]]; then
    last_success="$(awk -v m="${METRIC_PREFIX}_last_success_timestamp_seconds" \
      '$1 == m { v = $2 } END { if (v != "") print v }' "${METRICS_FILE}")"
  fi
  # Never succeeded: 0, so the staleness alert fires.
  last_success="${last_success:-0}"
  mkdir -p "$(dirname "${METRICS_FILE}")"
  tmp="$(mktemp "${METRICS_FILE}.tmp.XXXXXX")"
  cat >"${tmp}" <<EOF
# HELP ${METRIC_PREFIX}_last_run_timestamp_seconds Unix time of the last storage cleanup run.
# TYPE ${METRIC_PREFIX}_last_run_timestamp_seconds gauge
${METRIC_PREFIX}_last_run_timestamp_seconds ${now}
# HELP ${METRIC_PREFIX}_last_success_timestamp_seconds Unix time of the last successful storage cleanup.
# TYPE ${METRIC_PREFIX}_last_success_timestamp_seconds gauge
${METRIC_PREFIX}_last_success_timestamp_seconds ${last_success}
# HELP ${METRIC_PREFIX}_reclaimed_bytes Bytes reclaimed by the last storage cleanup run.
# TYPE ${METRIC_PREFIX}_reclaimed_bytes gauge
${METRIC_PREFIX}_reclaimed_bytes ${RECLAIMED_BYTES}
# HELP ${METRIC_PREFIX}_success 1 if the last storage cleanup run succeeded, else 0.
# TYPE ${METRIC_PREFIX}_success gauge
${METRIC_PREFIX}_success ${success}
EOF
  chmod 0644 "${tmp}"
  mv -f "${tmp}" "${METRICS_FILE}"
}

cmd_clean() {
  if [[ "${DRY_RUN}" == true ]]; then
    echo "dry run: nothing will be changed"
    if docker_reachable; then
      clean_docker
    else
      echo "Docker cleanup would be skipped: ${DOCKER_ERROR}"
    fi
    clean_logs
    [[ -z "${METRICS_FILE}" ]] || echo "would write metrics to ${METRICS_FILE}"
    echo "dry run: nothing was changed"
    return 0
  fi

  mkdir -p "$(dirname "${LOCK_FILE}")"
  exec 9>>"${LOCK_FILE}"
  if ! flock -n 9; then
    die "another storage cleanup is running (lock ${LOCK_FILE} is held): refusing to start"
  fi

  log "storage cleanup started (log dir ${LOG_DIR}, retention ${LOG_RETENTION_DAYS} days)"
  clean_docker
  clean_logs
  local success=1
  [[ "${FAILED}" == false ]] || success=0
  if [[ -n "${METRICS_FILE}" ]]; then
    write_metrics "$(date +%s)" "${success}"
  fi
  log "storage cleanup finished: reclaimed $(human_bytes "${RECLAIMED_BYTES}")" \
    "(${RECLAIMED_BYTES} bytes), success=${success}"
  [[ "${success}" == 1 ]] || exit 1
}

# --- cron -----------------------------------------------------------------------------

cmd_install_cron() {
  local args=(clean --log-dir "${LOG_DIR}" --log-retention-days "${LOG_RETENTION_DAYS}"
    --image-age "${IMAGE_AGE}" --build-cache-age "${BUILD_CACHE_AGE}" --lock-file "${LOCK_FILE}")
  [[ -z "${METRICS_FILE}" ]] || args+=(--metrics-file "${METRICS_FILE}")
  local command_line
  command_line="$(printf '%q ' "${SCRIPT_PATH}" "${args[@]}")"
  command_line="${command_line% } >> $(printf '%q' "${LOG_DIR}/${CRON_LOG_NAME}") 2>&1"
  [[ "${DRY_RUN}" == true ]] || mkdir -p "${LOG_DIR}"
  cron_install "${CRON_FILE}" "${CRON_MARKER}" "0 3 * * *" \
    "Daily storage cleanup of the NEUROS stack at 03:00. It never deletes volumes." \
    "${command_line}"
  [[ "${DRY_RUN}" == true ]] \
    || echo "installed ${CRON_FILE}: clean daily at 03:00, logging to ${LOG_DIR}/${CRON_LOG_NAME}"
}

cmd_uninstall_cron() {
  cron_uninstall "${CRON_FILE}" "${CRON_MARKER}"
}

main() {
  parse_args "$@"
  case "${COMMAND}" in
    report) cmd_report ;;
    clean) cmd_clean ;;
    install-cron) cmd_install_cron ;;
    uninstall-cron) cmd_uninstall_cron ;;
  esac
}

main "$@"
