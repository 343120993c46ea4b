# syntax=docker/dockerfile:1
#
# coding-bridge-agent with Claude Code, as a container.
#
#   docker build -t coding-bridge-agent .
#   docker run -it --rm -v ~/.ace-bridge:/config coding-bridge-agent pair
#   docker run -d --restart unless-stopped -v ~/.ace-bridge:/config \
#       -v "$PWD":/workspace coding-bridge-agent
#
# Build args: RUST_IMAGE (builder), NODE_IMAGE (runtime), CLAUDE_CODE_VERSION (npm).

ARG RUST_IMAGE=rust:1-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# ---- builder: a fully static x86_64 musl binary -------------------------------------
FROM ${RUST_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# musl-tools gives musl-gcc for the C and assembly parts of ring.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --target x86_64-unknown-linux-musl --bin coding-bridge-agent \
    && cp target/x86_64-unknown-linux-musl/release/coding-bridge-agent /coding-bridge-agent
# Refuse anything that is not fully static: no program interpreter, no shared libraries.
RUN if readelf -lW /coding-bridge-agent | grep INTERP >/dev/null \
       || readelf -dW /coding-bridge-agent | grep NEEDED >/dev/null; then \
        echo "coding-bridge-agent is not static" >&2; exit 1; \
    fi \
    && /coding-bridge-agent --version

# ---- runtime: the daemon, Claude Code, git and a shell ------------------------------
FROM ${NODE_IMAGE}
ARG CLAUDE_CODE_VERSION=latest
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Claude Code's tools want git, a shell and the usual small utilities; TLS needs the CAs.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git openssh-client less procps \
    && rm -rf /var/lib/apt/lists/*
RUN npm install -g "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
    && npm cache clean --force \
    && claude --version
COPY --from=builder /coding-bridge-agent /usr/local/bin/coding-bridge-agent

# Run as the image's unprivileged `node` user (uid:gid 1000:1000, usually the owner of a host
# ~/.ace-bridge; otherwise pass --user "$(id -u):$(id -g)"). /config holds the node token
# (credentials.json, 0600) and the logs; /workspace is where Claude Code sessions start.
RUN mkdir -p /config /workspace \
    && chown node:node /config /workspace \
    && chmod 0700 /config
ENV CODING_BRIDGE_CONFIG_DIR=/config \
    CODING_BRIDGE_CWD=/workspace \
    HOME=/home/node
USER 1000:1000
WORKDIR /workspace
VOLUME /config
# The daemon is a fine PID 1: it handles SIGTERM and reaps orphaned processes.
ENTRYPOINT ["/usr/local/bin/coding-bridge-agent"]
CMD ["up"]
