#!/usr/bin/env bash
#
# Backups of the agent's data, the one thing in the stack that cannot be regenerated.
#
#   backup          an online, consistent copy while the agent keeps serving (SQLite's
#                   backup API; pg_dump --format=custom for PostgreSQL) into a
#                   compressed, checksummed archive with a manifest, then rotation
#   restore ARCHIVE verify, then put it back into a stopped or fresh database
#   verify ARCHIVE  checksum, manifest, schema version and row counts
#   list            the archives in the backup folder, newest first
#   install-cron    writes a cron.d entry running `backup` daily at 03:30, after the
#                   03:00 storage cleanup
#   uninstall-cron  removes it
#
# The work is done by `python3 -m neuros.backup` (standard library only, so the host's
# python3 runs it with no venv); this wrapper gives it one documented interface, the
# defaults, and the cron entry.

set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "${SCRIPT_PATH}")/.." && pwd)"
readonly SCRIPT_PATH REPO_ROOT
# shellcheck source=scripts/lib/cron.sh
source "${REPO_ROOT}/scripts/lib/cron.sh"
readonly CRON_MARKER="# managed by neuros backup.sh"
readonly CRON_LOG_NAME="backup.log"
# After the storage cleanup (03:00, scripts/storage-management.sh): a prune never runs
# while a backup reads, and the backup sees the disk the cleanup left.
readonly CRON_SCHEDULE="30 3 * * *"

COMMAND=""
ARCHIVE=""
BACKUP_DIR="${NEUROS_BACKUP_DIR:-/var/backups/neuros}"
DB_PATH=""
DATABASE_URL=""
PROJECT="${COMPOSE_PROJECT_NAME:-neuros}"
COMPOSE_FILES=()
KEEP_DAILY=7
KEEP_WEEKLY=4
METRICS_FILE=""
PG_BIN="${NEUROS_PG_BIN:-}"
LOG_DIR="/var/log/neuros"
CRON_FILE="/etc/cron.d/neuros-backup"
# Whether a database option was given: verify then reads the archive where that
# database's tools are (the postgres container's pg_restore on the compose stack).
SOURCE_GIVEN=false
FORCE=false
JSON=false
DRY_RUN=false
PYTHON="${PYTHON:-python3}"

usage() {
  cat <<EOF
Usage: $(basename "$0") COMMAND [ARCHIVE] [options]

Commands:
  backup            copy the agent's database, online, into a compressed, checksummed
                    archive with a manifest; keep --keep-daily and --keep-weekly copies
  restore ARCHIVE   verify ARCHIVE, then restore it into a stopped or fresh database;
                    refuses a database that holds data unless --force
  verify ARCHIVE    check the checksum, the manifest, the schema version and row counts
                    (with --project, a PostgreSQL archive is read by the project's
                    postgres container: the host may have no or an older pg_restore)
  list              the archives in the backup folder, newest first
  install-cron      write a cron.d entry running 'backup' daily at 03:30 as root
  uninstall-cron    remove that entry

Where the database is (one of; default: the compose project's agent):
  --db PATH                 a SQLite database file on this host
  --database-url URL        a PostgreSQL database (postgresql://user@host:port/db); keep
                            the password out of it: libpq reads ~/.pgpass or PGPASSWORD
  --project NAME            compose project (default \$COMPOSE_PROJECT_NAME or neuros): the
                            agent's SQLite volume, or its postgres service when it has one
  --compose-file FILE       compose file of the project (repeatable; default
                            docker-compose.yml; add docker-compose.scale.yml for the
                            scale override)

Options:
  --backup-dir DIR          archives (default \$NEUROS_BACKUP_DIR or /var/backups/neuros)
  --keep-daily N            backup: keep the newest archive of the last N days (default 7)
  --keep-weekly M           backup: and of the last M ISO weeks (default 4)
  --metrics-file PATH       backup: write a node-exporter textfile-collector file
  --pg-bin DIR              folder of pg_dump, pg_restore and psql (default: PATH)
  --force                   restore: overwrite a database that holds data
  --json                    list, verify: machine-readable output
  --log-dir DIR             install-cron: log folder (default /var/log/neuros)
  --cron-file PATH          cron.d file (default /etc/cron.d/neuros-backup)
  --dry-run                 print what would be done, change nothing
  -h, --help                show this help

Copy the archives off this host (they are useless on the disk they protect): see
docs/backups.md.
EOF
}

err() {
  echo "backup: ERROR: $*" >&2
}

die() {
  err "$@"
  exit 1
}

usage_error() {
  err "$@"
  usage >&2
  exit 2
}

need_value() {
  [[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
}

parse_args() {
  while (($# > 0)); do
    case "$1" in
      backup | restore | verify | list | install-cron | uninstall-cron)
        [[ -z "${COMMAND}" ]] || usage_error "only one command allowed (got ${COMMAND} and $1)"
        COMMAND="$1"; shift ;;
      --backup-dir) need_value "$@"; BACKUP_DIR="$2"; shift 2 ;;
      --db) need_value "$@"; DB_PATH="$2"; SOURCE_GIVEN=true; shift 2 ;;
      --database-url) need_value "$@"; DATABASE_URL="$2"; SOURCE_GIVEN=true; shift 2 ;;
      --project) need_value "$@"; PROJECT="$2"; SOURCE_GIVEN=true; shift 2 ;;
      --compose-file) need_value "$@"; COMPOSE_FILES+=("$2"); SOURCE_GIVEN=true; shift 2 ;;
      --keep-daily) need_value "$@"; KEEP_DAILY="$2"; shift 2 ;;
      --keep-weekly) need_value "$@"; KEEP_WEEKLY="$2"; shift 2 ;;
      --metrics-file) need_value "$@"; METRICS_FILE="$2"; shift 2 ;;
      --pg-bin) need_value "$@"; PG_BIN="$2"; shift 2 ;;
      --log-dir) need_value "$@"; LOG_DIR="$2"; shift 2 ;;
      --cron-file) need_value "$@"; CRON_FILE="$2"; shift 2 ;;
      --force) FORCE=true; shift ;;
      --json) JSON=true; shift ;;
      --dry-run) DRY_RUN=true; shift ;;
      -h | --help) usage; exit 0 ;;
      -*) usage_error "unknown option: $1" ;;
      *)
        [[ -z "${ARCHIVE}" ]] || usage_error "unexpected argument: $1"
        ARCHIVE="$1"; shift ;;
    esac
  done
  [[ -n "${COMMAND}" ]] || usage_error "missing command"
  case "${COMMAND}" in
    restore | verify) [[ -n "${ARCHIVE}" ]] || usage_error "${COMMAND} needs an ARCHIVE" ;;
    *) [[ -z "${ARCHIVE}" ]] || usage_error "${COMMAND} takes no argument (got ${ARCHIVE})" ;;
  esac
  [[ -z "${DB_PATH}" || -z "${DATABASE_URL}" ]] || usage_error "give --db or --database-url, not both"
  [[ "${KEEP_DAILY}" =~ ^[0-9]+$ ]] || usage_error "--keep-daily must be a number, got '${KEEP_DAILY}'"
  [[ "${KEEP_WEEKLY}" =~ ^[0-9]+$ ]] || usage_error "--keep-weekly must be a number, got '${KEEP_WEEKLY}'"
}

# The database options of the Python tool: a file, a URL or the compose project.
source_args() {
  if [[ -n "${DB_PATH}" ]]; then
    printf '%s\0' --db "${DB_PATH}"
  elif [[ -n "${DATABASE_URL}" ]]; then
    printf '%s\0' --database-url "${DATABASE_URL}"
  else
    printf '%s\0' --compose-project "${PROJECT}"
    local file
    for file in "${COMPOSE_FILES[@]}"; do
      printf '%s\0' --compose-file "${file}"
    done
  fi
}

# Runs `python3 -m neuros.backup` from the repository, whose neuros/ package it needs.
run_tool() {
  command -v "${PYTHON}" >/dev/null 2>&1 \
    || die "${PYTHON} not found: the backup tool needs Python >= 3.11 on this host"
  "${PYTHON}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$("${PYTHON}" -V 2>&1) is too old: the backup tool needs Python >= 3.11"
  [[ -z "${PG_BIN}" ]] || export NEUROS_PG_BIN="${PG_BIN}"
  cd "${REPO_ROOT}"
  PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}" exec "${PYTHON}" -m neuros.backup "$@"
}

cmd_tool() {
  local args=("${COMMAND}")
  local -a source=()
  mapfile -d '' -t source < <(source_args)
  case "${COMMAND}" in
    backup)
      args+=("${source[@]}" --backup-dir "${BACKUP_DIR}"
        --keep-daily "${KEEP_DAILY}" --keep-weekly "${KEEP_WEEKLY}")
      [[ -z "${METRICS_FILE}" ]] || args+=(--metrics-file "${METRICS_FILE}")
      ;;
    restore)
      args+=("${ARCHIVE}" "${source[@]}")
      [[ "${FORCE}" != true ]] || args+=(--force)
      ;;
    verify)
      args+=("${ARCHIVE}")
      [[ "${SOURCE_GIVEN}" != true ]] || args+=("${source[@]}")
      [[ "${JSON}" != true ]] || args+=(--json)
      ;;
    list)
      args+=(--backup-dir "${BACKUP_DIR}")
      [[ "${JSON}" != true ]] || args+=(--json)
      ;;
  esac
  [[ "${DRY_RUN}" != true ]] || args+=(--dry-run)
  run_tool "${args[@]}"
}

# --- cron -----------------------------------------------------------------------------

cmd_install_cron() {
  # A cron file is world-readable: a password in it would be one too.
  if [[ "${DATABASE_URL}" =~ ^[a-z]+://[^/@]*:[^/@]*@ ]]; then
    die "--database-url holds a password: put it in /root/.pgpass (libpq reads it), not in ${CRON_FILE}"
  fi
  local -a source=()
  mapfile -d '' -t source < <(source_args)
  local args=(backup "${source[@]}" --backup-dir "${BACKUP_DIR}"
    --keep-daily "${KEEP_DAILY}" --keep-weekly "${KEEP_WEEKLY}")
  [[ -z "${METRICS_FILE}" ]] || args+=(--metrics-file "${METRICS_FILE}")
  [[ -z "${PG_BIN}" ]] || args+=(--pg-bin "${PG_BIN}")
  local command_line
  command_line="$(printf '%q ' "${SCRIPT_PATH}" "${args[@]}")"
  command_line="${command_line% } >> $(printf '%q' "${LOG_DIR}/${CRON_LOG_NAME}") 2>&1"
  [[ "${DRY_RUN}" == true ]] || mkdir -p "${LOG_DIR}"
  cron_install "${CRON_FILE}" "${CRON_MARKER}" "${CRON_SCHEDULE}" \
    "Daily backup of the NEUROS agent's data at 03:30, after the 03:00 storage cleanup." \
    "${command_line}"
  [[ "${DRY_RUN}" == true ]] || echo "installed ${CRON_FILE}: backup daily at 03:30 into" \
    "${BACKUP_DIR}, logging to ${LOG_DIR}/${CRON_LOG_NAME}"
}

cmd_uninstall_cron() {
  cron_uninstall "${CRON_FILE}" "${CRON_MARKER}"
}

main() {
  parse_args "$@"
  case "${COMMAND}" in
    install-cron) cmd_install_cron ;;
    uninstall-cron) cmd_uninstall_cron ;;
    *) cmd_tool ;;
  esac
}

main "$@"
