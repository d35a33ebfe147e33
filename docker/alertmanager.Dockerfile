# A stand-in for the upstream Alertmanager image, built by scripts/docker-setup.sh ONLY
# because no container registry is reachable where the tests run. It is tagged with
# the upstream name pinned in .env.example (ALERTMANAGER_IMAGE), holds Debian's build
# of exactly that version (the script checks), and mimics the upstream layout
# (Dockerfile of prometheus/alertmanager): binaries in /bin, user nobody (65534), data
# in /alertmanager, same ENTRYPOINT, CMD and port. The base is Debian instead of
# busybox, with wget for the compose healthcheck.
#
# Build context (assembled by the script): alertmanager, amtool, share/ (Debian's
# build loads its default notification templates from /usr/share/prometheus/
# alertmanager, fixed at build time, and refuses to start without them).
ARG BASE_IMAGE=neuros-base:bookworm
FROM ${BASE_IMAGE}

LABEL org.neuros.local-build="true" \
      org.opencontainers.image.title="Alertmanager (local stand-in for the upstream image)"

COPY alertmanager amtool /bin/
COPY share /usr/share/prometheus/alertmanager

# A minimal default config, as upstream ships one; compose mounts the real one over it.
# /alertmanager owned by nobody: a new named volume mounted there inherits it.
RUN mkdir -p /etc/alertmanager /alertmanager \
 && printf '%s\n' 'route:' '  receiver: default' 'receivers:' '  - name: default' \
        > /etc/alertmanager/alertmanager.yml \
 && chown -R 65534:65534 /etc/alertmanager /alertmanager

USER       65534:65534
EXPOSE     9093
VOLUME     ["/alertmanager"]
WORKDIR    /alertmanager
ENTRYPOINT ["/bin/alertmanager"]
CMD        ["--config.file=/etc/alertmanager/alertmanager.yml", \
            "--storage.path=/alertmanager"]
