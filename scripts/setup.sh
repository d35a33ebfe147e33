#!/usr/bin/env bash
#
# First-run set-up of the stack's secrets, run by the README's stack command
# (`scripts/setup.sh && docker compose up -d`). Idempotent: what exists is kept.
#
#   .env                          from .env.example plus a random GRAFANA_ADMIN_PASSWORD,
#                                 only when .env is missing
#   secrets/neuros-admin-token    a random API token with every scope for every user
#                                 (mode 0600; k6 and the chaos probes read it),
#                                 only when none exists
#   secrets/neuros-demo-token     a random API token for the demo profile's load
#                                 generator: it may write and read users `demo-*` only
#                                 (the agent enforces it), so it can never touch a real
#                                 user's data; mode 0644, for the k6 container's user
#   secrets/neuros/tokens.yml     their SHA-256 as the entries `admin` and `demo`, in the
#                                 format of `python -m neuros tokens`
#                                 (neuros/auth/tokens_file.py); compose mounts the
#                                 folder into the agent read-only
#
# Needs bash, coreutils and openssl only: no Python, so it runs before any venv.
# A tokens file written by hand or by the tokens CLI is never overwritten: the entry
# is appended when the file is in the CLI's format and has no `admin` yet; otherwise
# the script says what to do and leaves it alone.

set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "${SCRIPT_PATH}")/.." && pwd)"
readonly SCRIPT_PATH REPO_ROOT

# Paths relative to the repository root: neuros/auth/admin_token.py (ADMIN_TOKEN_FILE)
# and neuros/config.py (DEFAULT_API_TOKENS_FILE) name the same ones, and
# tests/stack/test_compose.py checks that they agree.
readonly ENV_FILE=".env"
readonly ENV_EXAMPLE=".env.example"
readonly PASSWORD_VARIABLE="GRAFANA_ADMIN_PASSWORD"
readonly SECRETS_DIR="secrets"
readonly ADMIN_TOKEN_FILE="secrets/neuros-admin-token"
readonly TOKENS_DIR="secrets/neuros"
readonly TOKENS_FILE="secrets/neuros/tokens.yml"
readonly ADMIN_NAME="admin"
# The demo profile's token (docker-compose.yml `demo`, k6/scenarios/demo.js): its users
# are the demo's id space only; tests/stack/test_compose.py checks that the three agree.
readonly DEMO_TOKEN_FILE="secrets/neuros-demo-token"
readonly DEMO_NAME="demo"
readonly DEMO_USERS="demo-*"
# neuros.auth.tokens: TOKEN_PREFIX, then token_urlsafe(32): 43 url-safe characters.
readonly TOKEN_PREFIX="nrs_"
readonly TOKEN_PATTERN="^${TOKEN_PREFIX}[A-Za-z0-9_-]{43}\$"
# neuros.auth.tokens_file.HEADER, verbatim: the agent's own writer starts files so.
readonly TOKENS_HEADER="# NEUROS API tokens: the SHA-256 of each token, never the token itself.
# Managed by \`python -m neuros tokens add|list|revoke\`; the agent reloads this
# file when it changes and on SIGHUP. users: ids, shell-style patterns, or '*'."

DRY_RUN=false

usage() {
  cat <<EOF
Usage: $(basename "$0") [--dry-run] [-h|--help]

Creates, only where missing, in ${REPO_ROOT}:
  ${ENV_FILE}
      ${ENV_EXAMPLE} plus a random ${PASSWORD_VARIABLE}
  ${ADMIN_TOKEN_FILE}
      a random API token with every scope for every user (mode 0600)
  ${TOKENS_FILE}
      its SHA-256 as token '${ADMIN_NAME}' (folder 0755, file 0644); an existing
      file in the tokens CLI's layout gets the entry appended
  ${DEMO_TOKEN_FILE}
      a random API token for the demo profile, users '${DEMO_USERS}' only (mode 0644:
      the k6 container reads it), registered as '${DEMO_NAME}' the same way
Re-running changes nothing. Clients read the token from \$NEUROS_API_TOKEN or
${ADMIN_TOKEN_FILE}; manage further tokens with \`python -m neuros tokens\`.

Options:
  --dry-run   print what would be done; change nothing
  -h, --help  show this help
EOF
}

err() {
  echo "setup: ERROR: $*" >&2
}

note() {
  echo "setup: NOTE: $*" >&2
}

log() {
  echo "setup: $*"
}

die() {
  err "$@"
  exit 1
}

# 32 random bytes, url-safe base64 without padding: what secrets.token_urlsafe(32) gives.
new_token() {
  local encoded
  encoded="$(openssl rand 32 | base64 -w 0 | tr '+/' '-_' | tr -d '=')"
  printf '%s%s' "${TOKEN_PREFIX}" "${encoded}"
}

sha256_hex() {
  local digest
  digest="$(printf '%s' "$1" | sha256sum)"
  printf '%s' "${digest%% *}"
}

# token_entry NAME DIGEST USERS SCOPE...: one entry, laid out as yaml.safe_dump lays
# out TokenEntry (scopes in Scope order).
token_entry() {
  local name="$1" digest="$2" users="$3" created scope
  shift 3
  created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf -- '- name: %s\n  sha256: %s\n  scopes:\n' "${name}" "${digest}"
  for scope in "$@"; do
    printf '  - %s\n' "${scope}"
  done
  # As safe_dump writes it: quoted only where a plain scalar would mean something else
  # (a leading * is a YAML alias).
  [[ "${users}" != \** ]] || users="'${users}'"
  printf "  users:\n  - %s\n  created: '%s'\n" "${users}" "${created}"
}

# Writes stdin to $1 through a temporary file in the same folder and a rename, as
# neuros.auth.tokens_file does: the agent sees the old file or the new one.
replace_file() {
  local target="$1" mode="$2" tmp
  tmp="$(mktemp "$(dirname "${target}")/.$(basename "${target}").XXXXXX")"
  if ! cat >"${tmp}" || ! chmod "${mode}" "${tmp}" || ! mv -f "${tmp}" "${target}"; then
    rm -f "${tmp}"
    die "cannot write ${target}"
  fi
}

setup_env() {
  if [[ -e "${ENV_FILE}" ]]; then
    log "${ENV_FILE} exists: kept"
    return
  fi
  [[ -f "${ENV_EXAMPLE}" ]] || die "${REPO_ROOT}/${ENV_EXAMPLE} is missing"
  if [[ "${DRY_RUN}" == true ]]; then
    log "would create ${ENV_FILE} from ${ENV_EXAMPLE} with a random ${PASSWORD_VARIABLE}"
    return
  fi
  local password
  password="$(openssl rand -hex 16)"
  {
    cat "${ENV_EXAMPLE}"
    echo "${PASSWORD_VARIABLE}=${password}"
  } | replace_file "${ENV_FILE}" 0600
  log "created ${ENV_FILE} with a random ${PASSWORD_VARIABLE}"
}

# Prints the tokens file with the entry $1 (named $2) appended, or fails (status 1)
# when the file is not in the CLI's layout, or (status 2) when it already names $2.
merged_tokens_file() {
  local entry="$1" name="$2" line in_tokens=false
  local admin_line="^(- |  )name: *['\"]?${name}['\"]? *\$"
  while IFS= read -r line || [[ -n "${line}" ]]; do
    case "${line}" in
      '' | '#'*) printf '%s\n' "${line}" ;;
      'tokens: []')
        [[ "${in_tokens}" == false ]] || return 1
        in_tokens=true
        echo "tokens:"
        ;;
      'tokens:')
        [[ "${in_tokens}" == false ]] || return 1
        in_tokens=true
        echo "${line}"
        ;;
      '- '* | '  '*)
        [[ "${in_tokens}" == true ]] || return 1
        [[ ! "${line}" =~ ${admin_line} ]] || return 2
        echo "${line}"
        ;;
      *) return 1 ;;
    esac
  done <"${TOKENS_FILE}"
  [[ "${in_tokens}" == true ]] || return 1
  printf '%s\n' "${entry}"
}

# Whether the tokens file names token $1 (a line "- name: $1").
tokens_file_names() {
  [[ -e "${TOKENS_FILE}" ]] && grep -Eq "^- name: *['\"]?$1['\"]? *\$" "${TOKENS_FILE}"
}

# setup_token NAME TOKEN_FILE MODE USERS SCOPE...: a random token in TOKEN_FILE and its
# hash as entry NAME in the tokens file, each only where missing.
setup_token() {
  local name="$1" token_file="$2" mode="$3" users="$4"
  shift 4
  local token=""
  if [[ -e "${token_file}" ]]; then
    token="$(tr -d '[:space:]' <"${token_file}")"
    [[ "${token}" =~ ${TOKEN_PATTERN} ]] \
      || die "${token_file} holds no ${TOKEN_PREFIX} token; delete it and re-run"
    if tokens_file_names "${name}"; then
      log "${token_file} and its entry '${name}' in ${TOKENS_FILE} exist: kept"
      return
    fi
    # The token survived, its entry did not: register the same token again.
    log "${TOKENS_FILE} has no '${name}': registering the token of ${token_file}"
  fi

  local merged status=0
  if [[ -e "${TOKENS_FILE}" ]]; then
    merged_tokens_file "" "${name}" >/dev/null || status=$?
    case "${status}" in
      0) ;;
      2)
        note "${TOKENS_FILE} has a token named '${name}' but ${token_file} is" \
          "missing, and only its hash is stored: left unchanged. Write that token to" \
          "${token_file}, or revoke it (python -m neuros tokens revoke ${name})" \
          "and run this again."
        return
        ;;
      *)
        note "${TOKENS_FILE} exists but is not laid out as \`python -m neuros tokens\`" \
          "writes it: left unchanged, and no '${name}' token was created. Add one with" \
          "(umask 077; python -m neuros tokens add ${name} --user '${users}' > ${token_file})"
        return
        ;;
    esac
  fi

  if [[ "${DRY_RUN}" == true ]]; then
    [[ -n "${token}" ]] || log "would create ${token_file} with a new random token"
    if [[ -e "${TOKENS_FILE}" ]]; then
      log "would append token '${name}' (its SHA-256) to ${TOKENS_FILE}"
    else
      log "would create ${TOKENS_FILE} with token '${name}' (its SHA-256)"
    fi
    return
  fi

  if [[ ! -d "${SECRETS_DIR}" ]]; then
    mkdir -m 0700 "${SECRETS_DIR}"
  fi
  if [[ ! -d "${TOKENS_DIR}" ]]; then
    # Mounted into the agent, whose uid is not the host user's: readable by all.
    mkdir -m 0755 "${TOKENS_DIR}"
  fi
  if [[ -z "${token}" ]]; then
    token="$(new_token)"
    [[ "${token}" =~ ${TOKEN_PATTERN} ]] || die "openssl gave no 32 random bytes"
    printf '%s\n' "${token}" | replace_file "${token_file}" "${mode}"
    log "created ${token_file} (the ${name} API token)"
  fi
  local entry
  entry="$(token_entry "${name}" "$(sha256_hex "${token}")" "${users}" "$@")"
  if [[ -e "${TOKENS_FILE}" ]]; then
    merged="$(merged_tokens_file "${entry}" "${name}")" || die "${TOKENS_FILE} changed meanwhile"
    printf '%s\n' "${merged}" | replace_file "${TOKENS_FILE}" 0644
    log "appended token '${name}' to ${TOKENS_FILE}"
  else
    printf '%s\ntokens:\n%s\n' "${TOKENS_HEADER}" "${entry}" \
      | replace_file "${TOKENS_FILE}" 0644
    log "created ${TOKENS_FILE} with token '${name}'"
  fi
}

main() {
  while (($# > 0)); do
    case "$1" in
      --dry-run) DRY_RUN=true ;;
      -h | --help)
        usage
        return 0
        ;;
      *)
        err "unknown argument: $1"
        usage >&2
        return 2
        ;;
    esac
    shift
  done
  local missing
  for missing in openssl sha256sum base64 mktemp; do
    command -v "${missing}" >/dev/null || die "${missing} is not installed"
  done
  # Secrets are private to this user unless a mode below says otherwise.
  umask 077
  cd "${REPO_ROOT}"
  setup_env
  setup_token "${ADMIN_NAME}" "${ADMIN_TOKEN_FILE}" 0600 '*' readings:write kpis:read analyze
  # Readable by the demo container's user; it reaches `demo-*` users only.
  setup_token "${DEMO_NAME}" "${DEMO_TOKEN_FILE}" 0644 "${DEMO_USERS}" readings:write kpis:read
}

main "$@"
