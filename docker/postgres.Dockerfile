# A stand-in for the upstream postgres:17.x image, built by scripts/docker-setup.sh
# ONLY because no container registry is reachable where the tests run. It is tagged
# with the upstream name pinned in .env.example (POSTGRES_IMAGE) and holds Debian
# trixie's postgresql-17 of exactly that version (the build checks). It keeps the
# upstream image's interface that docker-compose.scale.yml relies on:
#   - POSTGRES_PASSWORD required (or POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#     and POSTGRES_DB (default: the user), POSTGRES_INITDB_ARGS;
#   - initdb on first start into PGDATA=/var/lib/postgresql/data, then
#     /docker-entrypoint-initdb.d/*.sh|*.sql;
#   - user postgres with uid/gid 999, port 5432, STOPSIGNAL SIGINT (fast shutdown);
#   - pg_isready, psql and the server binaries on PATH.
# Unlike upstream there is no gosu: a root start drops to postgres with setpriv
# (util-linux, already in the base).
ARG BASE_IMAGE=neuros-base:trixie
FROM ${BASE_IMAGE}

ARG PG_MAJOR=17
ARG PG_VERSION

LABEL org.neuros.local-build="true" \
      org.opencontainers.image.title="PostgreSQL (local stand-in for the upstream image)"

# The upstream uid/gid, created before the package so that its postinst reuses them.
RUN groupadd -r postgres --gid=999 \
 && useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres \
 && mkdir -p /var/lib/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql

# postgresql-common first, told not to create the "main" cluster: initdb belongs to
# the entrypoint, into PGDATA, as upstream. The version check stops a build whose
# archive moved on from the pin, rather than tagging another version with its name.
RUN apt-get -q update \
 && DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends postgresql-common \
 && sed -ri 's/#?(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
 && DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends \
        "postgresql-${PG_MAJOR}" \
 && installed="$(dpkg-query -W -f '${Version}' "postgresql-${PG_MAJOR}")" \
 && case "${installed}" in \
      "${PG_VERSION}"-*) ;; \
      *) echo "postgresql-${PG_MAJOR} is ${installed}, the pin is ${PG_VERSION}" >&2; exit 1 ;; \
    esac \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

ENV PG_MAJOR=${PG_MAJOR} \
    PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8

# As upstream: the socket folder and PGDATA writable by any uid (a `user:` override
# still starts); a new named volume mounted on PGDATA inherits this.
RUN mkdir -p /var/run/postgresql /docker-entrypoint-initdb.d "${PGDATA}" \
 && chown -R postgres:postgres /var/run/postgresql "${PGDATA}" \
 && chmod 3777 /var/run/postgresql \
 && chmod 1777 "${PGDATA}"

COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh

VOLUME     ["/var/lib/postgresql/data"]
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE     5432
CMD        ["postgres"]
