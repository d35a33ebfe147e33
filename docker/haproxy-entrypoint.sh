#!/bin/sh
# The upstream haproxy image's entrypoint: options alone mean "haproxy with these",
# and haproxy itself runs master-worker (-W) in the foreground (-db), so that
# `docker stop` (SIGUSR1) drains connections and the logs reach `docker logs`.
set -e

if [ "${1#-}" != "$1" ]; then
  set -- haproxy "$@"
fi

if [ "$1" = 'haproxy' ]; then
  shift
  set -- haproxy -W -db "$@"
fi

exec "$@"
