# syntax=docker/dockerfile:1
# mcp-gateway container image.
#
#   docker build -t mcp-gateway .
#   docker run --rm --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
#     -p 3000:3000 \
#     -v "$PWD/examples/locked-down-container.yaml:/etc/mcp-gateway/config.yaml:ro" \
#     -v "$PWD/data:/data:ro" \
#     -v mcp-gateway-audit:/var/log/mcp-gateway \
#     -v "$PWD/tls:/run/secrets/mcp-gateway:ro" \
#     -e MCP_GATEWAY_HEALTHCHECK_URL=https://127.0.0.1:3000/healthz \
#     mcp-gateway
#
# Smoke test without any volume:
#   docker run --rm mcp-gateway check-config --config /usr/share/mcp-gateway/config.example.yaml
#
# --- sandbox notes (see docs/SANDBOX.md and docs/OPERATIONS.md) -------------------------------
# The gateway confines every worker itself: prctl(PR_SET_NO_NEW_PRIVS), rlimits, a Landlock
# ruleset and a seccomp filter per worker. The container runtime must let it:
#   * seccomp(2) and prctl(PR_SET_NO_NEW_PRIVS): allowed by Docker's, containerd's and
#     Kubernetes' RuntimeDefault seccomp profiles (filters stack; ours only narrows).
#   * landlock_create_ruleset / landlock_add_rule / landlock_restrict_self (444-446): allowed
#     by the default profile of Docker >= 23 and current containerd; the kernel must have
#     Landlock enabled (Linux >= 5.13, "landlock" in the LSM list). With an older runtime
#     profile the syscalls fail with EPERM and, as `sandbox.layers.landlock: required` is the
#     default, workers refuse to start with a message saying so: provide a seccomp profile that
#     allows them (or run `--security-opt seccomp=<docker's current default.json>`), or set
#     `sandbox.layers.landlock: best_effort` knowingly. `mcp-gateway doctor` shows what applies.
#   * AppArmor (docker-default) and SELinux container policies do not interfere: the workers
#     only drop privileges. Never run with --privileged or seccomp=unconfined to "make it work".
#   * The image runs as uid 1001 (not root). The uid-drop layer (`sandbox.layers.user`) then has
#     nothing to switch: it clears any capability the process holds and reports
#     "not needed (not root)", so `required` stays correct; sandbox.user/group are ignored.
#     Run with --cap-drop ALL: the gateway needs no capability.
#   * Read-only root filesystem: config at /etc/mcp-gateway/config.yaml, data at /data, audit in
#     the writable volume /var/log/mcp-gateway (or `audit.path: stderr`, which `docker logs`
#     and Kubernetes log agents collect). Nothing else is written (bytecode writing is off).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compilers and headers, wheels for the pinned dependencies -----------------------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libcap-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies are pinned exactly in pyproject.toml; the package is installed (not editable).
COPY pyproject.toml README.md requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir -r requirements.lock
COPY mcp_gateway ./mcp_gateway
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
 && /opt/venv/bin/mcp-gateway check-config --config /dev/null >/dev/null

# --- runtime: only the shared libraries the wheels load -------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2 libseccomp2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1001 mcp \
 && useradd --system --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin mcp \
 && mkdir -p /etc/mcp-gateway /data /var/log/mcp-gateway /usr/share/mcp-gateway \
 && chown 1001:1001 /var/log/mcp-gateway \
 && chmod 0750 /var/log/mcp-gateway
COPY --from=build /opt/venv /opt/venv
COPY config.example.yaml /usr/share/mcp-gateway/config.example.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MCP_GATEWAY_HEALTHCHECK_URL=http://127.0.0.1:3000/healthz
VOLUME ["/var/log/mcp-gateway"]
# `mcp-gateway doctor` / `check-config` without --config read ./config.yaml: the mounted one.
WORKDIR /etc/mcp-gateway
USER 1001:1001
EXPOSE 3000
# No curl in slim images: a Python one-liner, proxies from the environment ignored, and the
# loopback certificate not verified (set MCP_GATEWAY_HEALTHCHECK_URL to https://... with TLS).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,ssl,urllib.request as u; u.build_opener(u.ProxyHandler({}), u.HTTPSHandler(context=ssl._create_unverified_context())).open(os.environ.get('MCP_GATEWAY_HEALTHCHECK_URL', 'http://127.0.0.1:3000/healthz'), timeout=4)"]
ENTRYPOINT ["mcp-gateway"]
CMD ["serve", "--config", "/etc/mcp-gateway/config.yaml"]
