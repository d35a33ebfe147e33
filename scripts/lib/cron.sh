#!/usr/bin/env bash
#
# Sourced by scripts/storage-management.sh and scripts/backup.sh: one cron.d entry per
# script, written atomically, marked so that a file someone else wrote is never
# overwritten or removed. The caller defines die() and sets DRY_RUN.

# Escapes % (it ends a cron command line unless escaped).
cron_escape() {
  printf '%s' "${1//%/\\%}"
}

# cron_install FILE MARKER SCHEDULE COMMENT COMMAND_LINE: writes FILE running
# COMMAND_LINE (already shell-quoted) as root on SCHEDULE.
cron_install() {
  local file="$1" marker="$2" schedule="$3" comment="$4" command_line="$5"
  local content
  content="$(cat <<EOT
${marker}
# ${comment}
# Remove with: ${SCRIPT_PATH} uninstall-cron --cron-file ${file}
SHELL=/bin/bash
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
${schedule} root $(cron_escape "${command_line}")
EOT
)"
  if [[ "${DRY_RUN}" == true ]]; then
    echo "would write ${file}:"
    printf '%s\n' "${content}"
    return 0
  fi
  if [[ -f "${file}" ]] && ! grep -qF "${marker}" "${file}"; then
    die "${file} exists and was not written by this script: not overwriting it"
  fi
  mkdir -p "$(dirname "${file}")"
  local tmp
  tmp="$(mktemp "$(dirname "${file}")/.neuros-cron.XXXXXX")"
  printf '%s\n' "${content}" >"${tmp}"
  chmod 0644 "${tmp}"
  mv -f "${tmp}" "${file}"
}

# cron_uninstall FILE MARKER: removes FILE if this script wrote it.
cron_uninstall() {
  local file="$1" marker="$2"
  if [[ ! -e "${file}" ]]; then
    echo "${file} does not exist: nothing to remove"
    return 0
  fi
  grep -qF "${marker}" "${file}" || die "${file} was not written by this script: not removing it"
  if [[ "${DRY_RUN}" == true ]]; then
    echo "would run: rm -f $(printf '%q' "${file}")"
    return 0
  fi
  rm -f -- "${file}"
  echo "removed ${file}"
}
