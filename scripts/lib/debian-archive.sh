#!/usr/bin/env bash
#
# Sourced by scripts/install-tools.sh and scripts/docker-setup.sh: both fetch from the
# Debian archive the host's apt already uses, never from a hard-coded host.
# The caller defines die().

# Prints that archive's URI (NEUROS_DEBIAN_URI overrides it).
archive_uri() {
  if [[ -n "${NEUROS_DEBIAN_URI:-}" ]]; then
    echo "${NEUROS_DEBIAN_URI}"
    return
  fi
  local uri="" deb822="/etc/apt/sources.list.d/debian.sources"
  if [[ -r "${deb822}" ]]; then
    uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
      "${deb822}")"
  fi
  if [[ -z "${uri}" && -r /etc/apt/sources.list ]]; then
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) \
      if ($i ~ /^[a-z+]+:\/\// && $i !~ /security/) { print $i; exit } }' /etc/apt/sources.list)"
  fi
  [[ -n "${uri}" ]] || die "cannot find a Debian archive URI in ${deb822} (URIs: line) or" \
    "/etc/apt/sources.list; set NEUROS_DEBIAN_URI"
  echo "${uri}"
}
