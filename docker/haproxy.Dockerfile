# A stand-in for the upstream haproxy:3.0.x image, built by scripts/docker-setup.sh
# ONLY because no container registry is reachable where the tests run. It is tagged
# with the upstream name pinned in .env.example (HAPROXY_IMAGE) and holds Debian
# trixie's haproxy of exactly that version (the build checks). It keeps the upstream
# layout: config at /usr/local/etc/haproxy/haproxy.cfg, user haproxy (uid/gid 99),
# haproxy on PATH as the CMD, an entrypoint that runs it master-worker in the
# foreground (-W -db), STOPSIGNAL SIGUSR1 (soft stop: connections drain).
ARG BASE_IMAGE=neuros-base:trixie
FROM ${BASE_IMAGE}

ARG HAPROXY_VERSION

LABEL org.neuros.local-build="true" \
      org.opencontainers.image.title="HAProxy (local stand-in for the upstream image)"

# The package's postinst creates the user haproxy; it is then moved to the upstream
# uid/gid 99, which adduser would refuse to create (below its system-uid range).
RUN apt-get -q update \
 && DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends haproxy \
 && installed="$(dpkg-query -W -f '${Version}' haproxy)" \
 && case "${installed}" in \
      "${HAPROXY_VERSION}"-*) ;; \
      *) echo "haproxy is ${installed}, the pin is ${HAPROXY_VERSION}" >&2; exit 1 ;; \
    esac \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && groupmod --gid 99 haproxy \
 && usermod --uid 99 --gid 99 haproxy \
 && mkdir -p /usr/local/etc/haproxy /var/lib/haproxy \
 && chown haproxy:haproxy /var/lib/haproxy

COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh

STOPSIGNAL SIGUSR1
USER       haproxy
WORKDIR    /var/lib/haproxy
ENTRYPOINT ["docker-entrypoint.sh"]
CMD        ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
