# syntax=docker/dockerfile:1
#
# The ctxstore image: `ctxd` (the server, the entrypoint) and `ctxctl` (the CLI, used by
# the health check and for admin commands inside the container network).
#
#   docker build -t ctxstore:dev .
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts. The build
# stage matches the workspace's rust-version (Cargo.toml) and the runtime stage's
# Debian release (bookworm = Debian 12), so the binaries find the same glibc.
# Checked by scripts/check-deploy.sh (hadolint); docs/deployment.md has the walkthrough.

ARG RUST_VERSION=1.88

FROM rust:${RUST_VERSION}-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# RocksDB's bindings are generated at build time (the rocksdb crate's bindgen-runtime
# feature): bindgen loads libclang and needs clang's resource headers, which
# libclang-dev pulls in (see scripts/setup.sh). Debian revisions are not pinned: the
# mirror drops old ones, and the suite (bookworm) already fixes the major versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev clang \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the build reads: .dockerignore lets in nothing else, so editing docs or
# tests does not change this layer.
COPY . .

# The registry, git checkouts and target/ live in cache mounts, so a rebuild after a
# source change recompiles only ctxstore's own crates (RocksDB alone takes about 20
# minutes on 2 cores). A cache mount is not part of the image: the binaries are copied
# out of it to /out before the step ends.
RUN --mount=type=cache,id=ctxstore-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=ctxstore-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=ctxstore-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p ctxstore --bin ctxd -p ctxctl --bin ctxctl \
    && install -D -m 0755 -t /out target/release/ctxd target/release/ctxctl

# The runtime image has the C and C++ runtimes and nothing else: fail here, not at the
# first start, if the binaries need any other shared library. librocksdb-sys links
# libstdc++ dynamically; lz4 is compiled in.
RUN ldd /out/ctxd /out/ctxctl \
    && extra="$(ldd /out/ctxd /out/ctxctl | awk '$2 == "=>" { print $1 }' \
        | grep -vE '^(libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt)\.so' | sort -u || true)" \
    && if [ -n "$extra" ]; then echo "the runtime image lacks: $extra" >&2; exit 1; fi \
    && mkdir -p /out/data

# Runtime: distroless cc (glibc, libgcc_s, libstdc++, CA certificates, tzdata; no shell,
# no package manager), as its `nonroot` user (uid 65532). It is chosen over
# debian:bookworm-slim because the node exposes only two ports and needs no tools
# beyond its own: a smaller image with nothing to exploit or patch. The health check
# is `ctxctl health` because there is no curl. For a shell while debugging, build on
# debian:bookworm-slim instead (`useradd --uid 65532 ctxd`, same paths), or use
# `kubectl debug` with an ephemeral container. Pin the tags by digest in production.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

LABEL org.opencontainers.image.title="ctxstore" \
      org.opencontainers.image.description="ctxd, a sharded, Raft-replicated key-value store, and ctxctl" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/ctxd /out/ctxctl /usr/local/bin/
# The volume's mount point, owned by the user ctxd runs as: Docker copies this owner
# into a new named volume, so the node can write to it. In Kubernetes, fsGroup does it.
COPY --from=build --chown=65532:65532 /out/data /var/lib/ctxstore
USER 65532:65532

# 7001: gRPC (clients and the other nodes). 7101: plaintext HTTP with /metrics, /livez
# and /readyz (--status-listen). Neither is enabled by a flag here: pass --listen and
# --status-listen (deploy/compose.yaml and deploy/k8s/statefulset.yaml do).
EXPOSE 7001 7101
VOLUME ["/var/lib/ctxstore"]

# Healthy when the node's gRPC health service reports SERVING: serving, every replica
# it hosts knows a leader and has applied close to its commit index, not draining.
# Assumes --listen on port 7001 of all interfaces (or 127.0.0.1). Kubernetes ignores
# this and probes /readyz and /livez instead.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/ctxctl", "--endpoints", "127.0.0.1:7001", "--timeout", "3s", "health"]

# Logs go to stderr; RUST_LOG sets the level (default "info,raft=warn").
ENTRYPOINT ["/usr/local/bin/ctxd"]
CMD ["--help"]
