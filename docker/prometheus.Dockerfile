# A stand-in for the upstream Prometheus image, built by scripts/docker-setup.sh ONLY
# because no container registry is reachable where the tests run. It is tagged with
# the upstream name pinned in .env.example (PROMETHEUS_IMAGE), holds Debian's build of
# exactly that version (the script checks), and mimics the upstream layout (Dockerfile
# of prometheus/prometheus 3.x): binaries in /bin, user nobody (65534), data in
# /prometheus, same ENTRYPOINT, CMD and port. The base is Debian instead of busybox,
# with wget for the compose healthcheck.
#
# Build context (assembled by the script): prometheus, promtool, web/ (Debian's UI
# placeholder, which its build serves from /usr/share/prometheus/web).
ARG BASE_IMAGE=neuros-base:bookworm
FROM ${BASE_IMAGE}

LABEL org.neuros.local-build="true" \
      org.opencontainers.image.title="Prometheus (local stand-in for the upstream image)"

COPY prometheus promtool /bin/
COPY web /usr/share/prometheus/web

# A minimal default config, as upstream ships one; compose mounts the real one over it.
# /prometheus owned by nobody: a new named volume mounted there inherits it.
RUN mkdir -p /etc/prometheus /prometheus \
 && printf '%s\n' 'scrape_configs:' '  - job_name: prometheus' '    static_configs:' \
        '      - targets: ["localhost:9090"]' > /etc/prometheus/prometheus.yml \
 && chown -R 65534:65534 /etc/prometheus /prometheus \
 && chmod g+w /prometheus

USER       65534:65534
EXPOSE     9090
VOLUME     ["/prometheus"]
WORKDIR    /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD        ["--config.file=/etc/prometheus/prometheus.yml", \
            "--storage.tsdb.path=/prometheus"]
