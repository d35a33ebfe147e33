#!/usr/bin/env bash
#
# Entrypoint of the local postgres stand-in (docker/postgres.Dockerfile): the parts of
# the upstream image's docker-entrypoint.sh that a compose file relies on.
#   - Options alone mean "postgres with these"; any other command runs as given.
#   - Started as root: PGDATA is handed to postgres, then the script re-runs as
#     postgres (setpriv). Started as another uid (compose `user:`): runs as that.
#   - No PGDATA/PG_VERSION yet: POSTGRES_PASSWORD is required (unless
#     POSTGRES_HOST_AUTH_METHOD=trust), initdb creates the cluster with superuser
#     POSTGRES_USER (default postgres), remote logins use scram-sha-256, the server
#     listens on every address, POSTGRES_DB (default: the user) is created and
#     /docker-entrypoint-initdb.d/*.sh|*.sql run against it, on a server reachable
#     only through its socket until they are done.
# No usage or --dry-run: the container runtime is the only caller.

set -euo pipefail

err() {
  echo "postgres-entrypoint: ERROR: $*" >&2
}

log() {
  echo "postgres-entrypoint: $*"
}

# Runs the init scripts against POSTGRES_DB on the socket-only server.
run_init_scripts() {
  local file
  for file in /docker-entrypoint-initdb.d/*; do
    case "${file}" in
      *.sh)
        log "running ${file}"
        # shellcheck disable=SC1090
        . "${file}"
        ;;
      *.sql)
        log "running ${file}"
        psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --no-password \
          --dbname "${POSTGRES_DB}" -f "${file}"
        ;;
      *) ;;
    esac
  done
}

init_cluster() {
  local auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [[ -z "${POSTGRES_PASSWORD:-}" && "${auth}" != "trust" ]]; then
    err "Database is uninitialized and superuser password is not specified."
    err "You must specify POSTGRES_PASSWORD to a non-empty value for the superuser."
    exit 1
  fi
  local pwfile
  pwfile="$(mktemp)"
  printf '%s' "${POSTGRES_PASSWORD:-}" >"${pwfile}"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as upstream.
  initdb --username="${POSTGRES_USER}" --pwfile="${pwfile}" \
    --auth-local=trust --auth-host="${auth}" ${POSTGRES_INITDB_ARGS:-}
  rm -f "${pwfile}"
  printf '\nhost all all all %s\n' "${auth}" >>"${PGDATA}/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >>"${PGDATA}/postgresql.conf"

  # Socket only while initialising: a client must not see a half-made database.
  pg_ctl -D "${PGDATA}" -w -o "-c listen_addresses=''" start
  if [[ "${POSTGRES_DB}" != "postgres" ]]; then
    # On stdin: psql interpolates :"db" (quoted identifier) there, not in -c.
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --no-password \
      --dbname postgres --set db="${POSTGRES_DB}" <<<'CREATE DATABASE :"db";'
  fi
  run_init_scripts
  pg_ctl -D "${PGDATA}" -m fast -w stop
  log "init process complete; ready for start up"
}

main() {
  if [[ "${1:-}" == -* ]]; then
    set -- postgres "$@"
  fi
  if [[ "${1:-}" != "postgres" ]]; then
    exec "$@"
  fi
  if (( EUID == 0 )); then
    mkdir -p "${PGDATA}"
    chown postgres:postgres "${PGDATA}"
    chmod 0700 "${PGDATA}"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
  fi
  export POSTGRES_USER="${POSTGRES_USER:-postgres}"
  export POSTGRES_DB="${POSTGRES_DB:-${POSTGRES_USER}}"
  if [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
    init_cluster
  fi
  exec "$@"
}

main "$@"
