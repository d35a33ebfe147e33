#!/usr/bin/env bash
#
# The one command that lints, type-checks and tests NEUROS:
#   scripts/test.sh [options] [pytest args...]
#
# It creates or updates the venv .venv, installs into it from uv.lock, frozen, the
# project with its test and dev extras, installs the external tools
# (scripts/install-tools.sh), then runs ruff, mypy and pytest. Every check runs; the
# exit status is the status of the first one that failed.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly VENV="${REPO_ROOT}/.venv"
readonly INSTALL_STAMP="${VENV}/.neuros-install-stamp"
# The uv that installs uv.lock: the release pinned in pyproject.toml's dev extra.
readonly UV_VERSION="0.13.9"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--no-install] [--docker] [--help] [--] [pytest args...]

Creates or updates .venv, installs into it from uv.lock, frozen, the project
(editable) with its test and dev extras ('uv sync --frozen --extra test --extra dev',
uv ${UV_VERSION}; again only when pyproject.toml or uv.lock changed), the tools
(scripts/install-tools.sh) and, when missing, Debian's postgresql and make packages
(the storage tests start their own server; the Makefile tests dry-run make), then
runs: ruff check ., mypy, pytest.
Arguments this script does not know are passed on to pytest.

Options:
  --no-install  skip the venv, uv and tool installs (use what is there)
  --docker      run the tests that need Docker (sets NEUROS_TEST_DOCKER=1;
                the default when CI=true)
  --help        show this help

Environment:
  NEUROS_TOOLS_DIR    tool folder (default: <repo>/.tools), exported to tests
  NEUROS_TEST_DOCKER  1 to run the Docker tests
  CI                  'true' in CI: Docker tests run, missing tools fail
EOF
}

err() {
  echo "test.sh: ERROR: $*" >&2
}

log() {
  echo "==> $*"
}

# Creates .venv if missing or broken and installs into it, from uv.lock and frozen (the
# locked versions, never a new resolution), the project (editable) with its test and
# dev extras, unless pyproject.toml and uv.lock are unchanged since the last successful
# install. The sync is exact: packages not in the lock are removed (pip stays).
install_venv() {
  if ! "${VENV}/bin/python" -c '' 2>/dev/null; then
    log "creating ${VENV}"
    if ! python3 -m venv --clear "${VENV}"; then
      err "python3 -m venv failed (on Debian: apt-get install python3-venv)"
      return 1
    fi
  fi
  local want
  want="$(cd "${REPO_ROOT}" && sha256sum pyproject.toml uv.lock | sha256sum | cut -d ' ' -f 1)"
  if [[ -f "${INSTALL_STAMP}" && "$(<"${INSTALL_STAMP}")" == "${want}" ]]; then
    log "venv up to date (pyproject.toml and uv.lock unchanged)"
    return 0
  fi
  rm -f "${INSTALL_STAMP}"
  if [[ "$("${VENV}/bin/uv" --version 2>/dev/null)" != "uv ${UV_VERSION}" ]]; then
    log "pip install uv==${UV_VERSION}"
    if ! "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
      "uv==${UV_VERSION}"; then
      err "pip install uv==${UV_VERSION} failed"
      return 1
    fi
  fi
  log "uv sync --frozen --extra test --extra dev (from uv.lock)"
  # Into .venv, with the python3 that created it: uv never downloads a Python.
  if ! UV_PROJECT_ENVIRONMENT="${VENV}" UV_PYTHON_DOWNLOADS=never \
    "${VENV}/bin/uv" sync --quiet --frozen --project "${REPO_ROOT}" \
    --python "${VENV}/bin/python3" --extra test --extra dev; then
    err "uv sync --frozen failed (after editing pyproject.toml: uv lock; docs/development.md)"
    return 1
  fi
  echo "${want}" >"${INSTALL_STAMP}"
}

# Debian packages the tests use, installed when missing: the PostgreSQL server the
# storage tests start (tests/support/postgres_server.py) and make (tests/tools/test_generators.py
# dry-runs the Makefile). Without them those tests skip (and fail in CI).
install_debian_packages() {
  local packages=()
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    packages+=(postgresql)
  fi
  if ! command -v make >/dev/null; then
    packages+=(make)
  fi
  if (( ${#packages[@]} == 0 )); then
    return 0
  fi
  local sudo=()
  if (( EUID != 0 )); then
    if ! command -v sudo >/dev/null; then
      err "${packages[*]} missing and installing needs root: apt-get install ${packages[*]}"
      return 1
    fi
    sudo=(sudo)
  fi
  log "apt-get install ${packages[*]}"
  "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${packages[@]}"
}

main() {
  local install=1
  local -a pytest_args=()
  while (( $# )); do
    case "$1" in
      --no-install) install=0 ;;
      --docker) export NEUROS_TEST_DOCKER=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      --)
        shift
        pytest_args+=("$@")
        break
        ;;
      *) pytest_args+=("$1") ;;
    esac
    shift
  done

  if [[ "${CI:-}" == "true" ]]; then
    export NEUROS_TEST_DOCKER="${NEUROS_TEST_DOCKER:-1}"
  fi

  cd "${REPO_ROOT}"
  export NEUROS_TOOLS_DIR="${NEUROS_TOOLS_DIR:-${REPO_ROOT}/.tools}"

  if (( install )); then
    install_venv || exit 1
    log "installing tools (scripts/install-tools.sh)"
    bash "${REPO_ROOT}/scripts/install-tools.sh" || {
      err "scripts/install-tools.sh failed"
      exit 1
    }
    install_debian_packages || {
      err "installing Debian packages (postgresql, make) failed"
      exit 1
    }
  fi
  # Also with --no-install: it is quick when nothing changed, and it rebuilds the
  # agent image from the code under test, so the Docker tests never run a stale one.
  if [[ "${NEUROS_TEST_DOCKER:-}" == "1" ]]; then
    log "Docker engine and images (scripts/docker-setup.sh)"
    bash "${REPO_ROOT}/scripts/docker-setup.sh" || {
      err "scripts/docker-setup.sh failed"
      exit 1
    }
  fi
  export PATH="${NEUROS_TOOLS_DIR}/bin:${VENV}/bin:${PATH}"
  export VIRTUAL_ENV="${VENV}"

  local status=0 failed_step="" rc
  # Runs one check; remembers the first failure and carries on.
  step() {
    local name="$1"
    shift
    log "${name}"
    rc=0
    "$@" || rc=$?
    if (( rc != 0 && status == 0 )); then
      status="${rc}"
      failed_step="${name}"
    fi
    return 0
  }

  step "ruff check ." ruff check .
  step "mypy" mypy
  step "pytest${pytest_args[*]:+ ${pytest_args[*]}}" pytest "${pytest_args[@]}"
  if (( rc == 5 )); then
    err "pytest collected no tests (exit 5): counted as a failure"
  fi

  if (( status != 0 )); then
    err "'${failed_step}' failed (exit ${status})"
  fi
  exit "${status}"
}

main "$@"
