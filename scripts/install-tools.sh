#!/usr/bin/env bash
#
# Installs the observability and lint tools that the tests run (Prometheus,
# promtool, Alertmanager, amtool, node_exporter, Docker Compose v2, ShellCheck)
# into a private, git-ignored folder. Nothing is installed into the system:
# Debian packages are fetched with `apt-get download` through a private sources
# list and state dir, then unpacked with `dpkg -x`.
#
# Layout (under $NEUROS_TOOLS_DIR, default <repo>/.tools):
#   bin/     symlinks to every tool (put this first on PATH)
#   root/    the unpacked packages
#   apt/     private apt sources list, package lists and cache
#   stamp    what was installed; a second run that finds it up to date is fast
#
# The Compose plugin is also copied to ${DOCKER_CONFIG:-~/.docker}/cli-plugins.

set -euo pipefail

# Major versions the project's configs are written for. A tool whose major
# version differs makes this script fail.
readonly PROMETHEUS_MAJOR=3      # prometheus and promtool
readonly ALERTMANAGER_MAJOR=0    # alertmanager and amtool
readonly ALERTMANAGER_MIN_MINOR=27
readonly NODE_EXPORTER_MAJOR=1
readonly COMPOSE_MAJOR=2

# Debian suite carrying current versions of the Go tools. ShellCheck comes
# from the host's own release instead: sid's build needs a newer glibc.
readonly NEWEST_SUITE="sid"
readonly NEWEST_PACKAGES=(
  prometheus
  promtool
  prometheus-alertmanager
  prometheus-node-exporter
  docker-compose
)
readonly HOST_PACKAGES=(shellcheck)

# Bump when the layout or the package set changes: invalidates old stamps.
readonly STAMP_FORMAT="neuros-tools-v1"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
# shellcheck source=scripts/lib/debian-archive.sh
source "${REPO_ROOT}/scripts/lib/debian-archive.sh"
TOOLS_DIR="${NEUROS_TOOLS_DIR:-${REPO_ROOT}/.tools}"
DRY_RUN=0
FORCE=0

usage() {
  cat <<EOF
Usage: $(basename "$0") [--dry-run] [--force] [--help]

Installs prometheus, promtool, alertmanager, amtool, node_exporter,
docker-compose (Compose v2 plugin) and shellcheck into a private folder,
idempotently, and checks their major versions.

Options:
  --dry-run   print what would be done; change nothing, download nothing
  --force     reinstall even if the stamp says everything is present
  --help      show this help

Environment:
  NEUROS_TOOLS_DIR   install folder (default: <repo>/.tools); binaries in its bin/
  NEUROS_DEBIAN_URI  Debian archive URI (default: the URIs: line of
                     /etc/apt/sources.list.d/debian.sources)
  DOCKER_CONFIG      Docker CLI config dir (default: ~/.docker); the Compose
                     plugin is copied to its cli-plugins/
EOF
}

err() {
  echo "install-tools: ERROR: $*" >&2
}

die() {
  err "$@"
  exit 1
}

log() {
  echo "install-tools: $*"
}

# Runs a command, or only prints it with --dry-run.
run() {
  if (( DRY_RUN )); then
    echo "would run: $*"
  else
    "$@"
  fi
}

# Prints the host's Debian codename (e.g. bookworm).
host_suite() {
  local codename=""
  if [[ -r /etc/os-release ]]; then
    codename="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release | tr -d "\"'")"
  fi
  if [[ -z "${codename}" ]]; then
    die "cannot tell the host's Debian codename from /etc/os-release (VERSION_CODENAME)"
  fi
  echo "${codename}"
}

# The stamp's first line: changes whenever what should be installed changes.
stamp_spec() {
  echo "${STAMP_FORMAT} ${NEWEST_SUITE}:${NEWEST_PACKAGES[*]} $1:${HOST_PACKAGES[*]}"
}

# Tool name in bin/ -> path inside root/.
declare -A TOOL_PATHS=(
  [prometheus]="usr/bin/prometheus"
  [promtool]="usr/bin/promtool"
  [alertmanager]="usr/bin/prometheus-alertmanager"
  [amtool]="usr/bin/amtool"
  [node_exporter]="usr/bin/prometheus-node-exporter"
  [docker-compose]="usr/libexec/docker/cli-plugins/docker-compose"
  [shellcheck]="usr/bin/shellcheck"
)
readonly TOOL_ORDER=(prometheus promtool alertmanager amtool node_exporter docker-compose
  shellcheck)

# True when the stamp matches and every binary is present.
up_to_date() {
  local spec="$1" name
  [[ -f "${TOOLS_DIR}/stamp" ]] || return 1
  [[ "$(head -n 1 "${TOOLS_DIR}/stamp")" == "${spec}" ]] || return 1
  for name in "${TOOL_ORDER[@]}"; do
    [[ -x "${TOOLS_DIR}/root/${TOOL_PATHS[${name}]}" ]] || return 1
  done
}

# Downloads the packages with a private apt configuration into $1.
fetch_debs() {
  local dest="$1" host="$2"
  local uri state
  uri="$(archive_uri)"
  state="${TOOLS_DIR}/apt"
  local -a opts=(
    "-oDir::State::Lists=${state}/lists"
    "-oDir::Etc::SourceList=${state}/sources.list"
    "-oDir::Etc::SourceParts=/dev/null"
    "-oDir::Etc::Preferences=/dev/null"
    "-oDir::Etc::PreferencesParts=/dev/null"
    "-oDir::Cache=${state}/cache"
  )
  if (( EUID == 0 )); then
    # The private folders are not readable by apt's _apt sandbox user.
    opts+=("-oAPT::Sandbox::User=root")
  fi
  local -a packages=("${NEWEST_PACKAGES[@]}")
  local pkg
  for pkg in "${HOST_PACKAGES[@]}"; do
    packages+=("${pkg}/${host}")
  done

  log "fetching from ${uri} (suites ${NEWEST_SUITE} and ${host}): ${packages[*]}"
  if (( DRY_RUN )); then
    echo "would write ${state}/sources.list:"
    echo "  deb ${uri} ${NEWEST_SUITE} main"
    echo "  deb ${uri} ${host} main"
    echo "would run: apt-get -q ${opts[*]} --error-on=any update"
    echo "would run (in ${dest}): apt-get -q ${opts[*]} download ${packages[*]}"
    return
  fi

  mkdir -p "${state}/lists/partial" "${state}/cache/archives/partial" "${dest}"
  printf 'deb %s %s main\ndeb %s %s main\n' \
    "${uri}" "${NEWEST_SUITE}" "${uri}" "${host}" >"${state}/sources.list"
  if ! apt-get -q "${opts[@]}" --error-on=any update; then
    die "apt-get update failed for ${uri} (suites ${NEWEST_SUITE}, ${host});" \
      "see the messages above"
  fi
  if ! (cd "${dest}" && apt-get -q "${opts[@]}" download "${packages[@]}"); then
    die "apt-get download failed for: ${packages[*]}; see the messages above"
  fi
}

# Unpacks every .deb in $1 into a fresh $2.
extract_debs() {
  local debs="$1" dest="$2" deb
  run rm -rf "${dest}"
  run mkdir -p "${dest}"
  if (( DRY_RUN )); then
    echo "would run: dpkg -x <each .deb> ${dest}"
    return
  fi
  for deb in "${debs}"/*.deb; do
    [[ -e "${deb}" ]] || die "no .deb files in ${debs}"
    dpkg -x "${deb}" "${dest}" || die "dpkg -x failed for ${deb}"
  done
}

# Makes bin/ symlinks and copies the Compose plugin for the Docker CLI.
link_tools() {
  local name
  run mkdir -p "${TOOLS_DIR}/bin"
  for name in "${TOOL_ORDER[@]}"; do
    run ln -sfn "../root/${TOOL_PATHS[${name}]}" "${TOOLS_DIR}/bin/${name}"
  done
  local plugin_dir="${DOCKER_CONFIG:-${HOME:?HOME is not set}/.docker}/cli-plugins"
  local src="${TOOLS_DIR}/root/${TOOL_PATHS[docker-compose]}"
  # A copy, not a symlink: the Docker CLI is shared by every checkout.
  if (( DRY_RUN )) || ! cmp -s "${src}" "${plugin_dir}/docker-compose"; then
    run mkdir -p "${plugin_dir}"
    run install -m 0755 "${src}" "${plugin_dir}/docker-compose"
  fi
}

# Prints a tool's version; fails if its major (and minimum minor) differ.
# Debian's alertmanager loads its default notification templates from a folder
# fixed at build time and refuses to start without them. They are the only files
# placed outside the tools folder, and only when missing.
readonly AM_TEMPLATES="usr/share/prometheus/alertmanager"
install_alertmanager_template() {
  local name
  for name in default.tmpl email.tmpl; do
    [[ -f "/${AM_TEMPLATES}/${name}" ]] && continue
    if [[ ! -w / ]] && (( ! DRY_RUN )); then
      err "alertmanager needs /${AM_TEMPLATES}/${name}; rerun as root to place it"
      continue
    fi
    run install -D -m 0644 "${TOOLS_DIR}/root/${AM_TEMPLATES}/${name}" "/${AM_TEMPLATES}/${name}"
  done
}

check_version() {
  local name="$1" want_major="$2" min_minor="${3:-0}"
  shift 3
  local out version
  if ! out="$("${TOOLS_DIR}/bin/${name}" "$@" 2>&1)"; then
    err "${name} $* failed:"
    echo "${out}" >&2
    return 1
  fi
  if [[ ! "${out}" =~ v?([0-9]+)\.([0-9]+)\.([0-9]+)[^[:space:]]* ]]; then
    err "cannot read a version from \`${name} $*\`: ${out%%$'\n'*}"
    return 1
  fi
  version="${BASH_REMATCH[0]}"
  printf '  %-15s %s\n' "${name}" "${version}"
  if [[ "${want_major}" == "-" ]]; then
    return 0
  fi
  if (( BASH_REMATCH[1] != want_major )); then
    err "${name} ${version}: expected major version ${want_major}"
    return 1
  fi
  if (( BASH_REMATCH[2] < min_minor )); then
    err "${name} ${version}: expected at least ${want_major}.${min_minor}"
    return 1
  fi
}

check_versions() {
  if (( DRY_RUN )); then
    echo "would check versions: prometheus/promtool ${PROMETHEUS_MAJOR}.x," \
      "alertmanager/amtool ${ALERTMANAGER_MAJOR}.x (>= ${ALERTMANAGER_MAJOR}.${ALERTMANAGER_MIN_MINOR})," \
      "node_exporter ${NODE_EXPORTER_MAJOR}.x, docker-compose ${COMPOSE_MAJOR}.x"
    return
  fi
  local failed=0
  log "versions in ${TOOLS_DIR}/bin:"
  check_version prometheus "${PROMETHEUS_MAJOR}" 0 --version || failed=1
  check_version promtool "${PROMETHEUS_MAJOR}" 0 --version || failed=1
  check_version alertmanager "${ALERTMANAGER_MAJOR}" "${ALERTMANAGER_MIN_MINOR}" --version \
    || failed=1
  check_version amtool "${ALERTMANAGER_MAJOR}" "${ALERTMANAGER_MIN_MINOR}" --version || failed=1
  check_version node_exporter "${NODE_EXPORTER_MAJOR}" 0 --version || failed=1
  check_version docker-compose "${COMPOSE_MAJOR}" 0 version || failed=1
  check_version shellcheck - 0 --version || failed=1
  if (( failed )); then
    die "tool version check failed (expected majors are at the top of $0)"
  fi
}

main() {
  while (( $# )); do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --force) FORCE=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      *)
        err "unknown argument: $1"
        usage >&2
        exit 2
        ;;
    esac
    shift
  done

  local tool
  for tool in apt-get dpkg awk cmp install; do
    command -v "${tool}" >/dev/null || die "${tool} is needed but not found on PATH"
  done

  local host spec
  host="$(host_suite)"
  spec="$(stamp_spec "${host}")"

  if (( ! DRY_RUN )); then
    mkdir -p "${TOOLS_DIR}"
    TOOLS_DIR="$(cd "${TOOLS_DIR}" && pwd)"
    # One install at a time per folder (concurrent test runs share it).
    if command -v flock >/dev/null; then
      exec 9>"${TOOLS_DIR}/.lock"
      flock 9
    fi
  fi

  local fresh=0
  if (( ! FORCE )) && up_to_date "${spec}"; then
    log "up to date in ${TOOLS_DIR} (stamp matches; use --force to reinstall)"
  else
    log "installing into ${TOOLS_DIR}"
    fresh=1
    local debs="${TOOLS_DIR}/debs"
    run rm -f "${TOOLS_DIR}/stamp"
    run rm -rf "${debs}"
    fetch_debs "${debs}" "${host}"
    extract_debs "${debs}" "${TOOLS_DIR}/root"
    if (( ! DRY_RUN )); then
      {
        echo "${spec}"
        local deb
        for deb in "${debs}"/*.deb; do
          # shellcheck disable=SC2016  # dpkg-deb's own ${field} syntax.
          dpkg-deb --show --showformat='${Package} ${Version}\n' "${deb}"
        done
      } >"${TOOLS_DIR}/stamp.new"
    fi
    run rm -rf "${debs}"
  fi

  link_tools
  install_alertmanager_template
  check_versions
  if (( fresh && ! DRY_RUN )); then
    # Written only once every tool is present and of the right version.
    mv "${TOOLS_DIR}/stamp.new" "${TOOLS_DIR}/stamp"
  fi
  if (( DRY_RUN )); then
    log "dry run: nothing was changed"
  else
    log "done; add ${TOOLS_DIR}/bin to PATH"
  fi
}

main "$@"
