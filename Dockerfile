# syntax=docker/dockerfile:1@sha256:ecfaec9ed6d810b56388c508f4121597bfbba70d41a6dfeee4d8cad5f295fc32
#
# Two images from one build:
#
# - the default target, `runtime`: the services only — oda-producer (the
#   entrypoint), oda-normalize, oda-votes, oda-history, oda-passthrough,
#   oda-pg-sink, oda-replay — and oda-healthcheck, the health check. No
#   simulator, no curl, no shell tools beyond Debian's base. Pick a binary
#   with `--entrypoint` (docker) or `command:` (Kubernetes, compose).
# - `--target sim`: oda-sim, the stand-in for the ODA API, for tests and
#   the offline compose profile. Never deployed beside production.
#
#   docker build -t oda-cdc .
#   docker build --target sim -t oda-cdc-sim .
#   docker run --rm -e KAFKA_BROKERS=kafka:9092 -e METRICS_ADDR=0.0.0.0:9464 oda-cdc
#   docker run --rm --entrypoint oda-normalize -e ADMIN_PORT=9465 -e METRICS_ADDR=0.0.0.0:9465 oda-cdc
#
# Base images are pinned by digest (the tag says which release it is; the
# digest is what is pulled), so a rebuild pulls the same bytes. To move to
# newer ones, resolve each tag and replace its digest (deploy/README.md):
#   docker buildx imagetools inspect rust:1.95-bookworm --format '{{json .Manifest.Digest}}'

# --- builder ---------------------------------------------------------------
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS builder

# librdkafka is compiled from source by rdkafka-sys (feature cmake-build) and
# links OpenSSL, libcurl (OAUTHBEARER/OIDC) and zlib dynamically; zstd is
# built in. jemalloc, the services' allocator, is compiled from source by
# tikv-jemalloc-sys (configure and make, from build-essential) with the
# options in .cargo/config.toml. libsasl2-dev is only needed if the GSSAPI
# feature is switched on; it is kept so that change needs no Dockerfile edit.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libssl-dev libsasl2-dev libcurl4-openssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The cache mounts keep the crates.io index, downloaded crates and compiled
# dependencies between builds; the binaries are copied out of the cached
# target directory in the same step, because the cache is not in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p oda-producer -p oda-consumers -p oda-sim -p oda-cdc-core \
 && mkdir -p /out/services /out/sim \
 && cp target/release/oda-producer target/release/oda-normalize \
       target/release/oda-votes target/release/oda-history target/release/oda-passthrough \
       target/release/oda-pg-sink target/release/oda-replay target/release/oda-healthcheck \
       /out/services/ \
 && cp target/release/oda-sim /out/sim/

# --- base: what every image runs on ----------------------------------------
FROM debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251 AS base

# ca-certificates: TLS to oda.ft.dk, the registry and SASL_SSL brokers.
# libssl3/libcurl4/libsasl2-2: what the librdkafka build links against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates libssl3 libsasl2-2 libcurl4 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 oda \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin oda

# Numeric, so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 10001:10001
# SIGTERM: finish or abort the open transaction and exit 0 within 10 s.
STOPSIGNAL SIGTERM

# --- sim: the ODA stand-in (tests, the offline compose profile) -------------
FROM base AS sim
COPY --from=builder /out/sim/ /out/services/oda-healthcheck /usr/local/bin/
EXPOSE 8089
# oda-sim has no admin port; its /_sim/stats answers once it serves.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=6 \
    CMD ["oda-healthcheck", "http://127.0.0.1:8089/_sim/stats"]
ENTRYPOINT ["oda-sim"]
CMD ["--host=0.0.0.0", "--port=8089"]

# --- runtime: the services (the default target, built last) -----------------
FROM base AS runtime

COPY --from=builder /out/services/ /usr/local/bin/

# No config file is baked in: configure with environment variables, or mount
# a TOML file (Kubernetes: /etc/oda-cdc/oda-cdc.toml) and pass `--config`.

# Admin ports (/metrics, /healthz, /readyz): oda-producer 9464,
# oda-normalize 9465, oda-votes 9466, oda-passthrough 9467, oda-history
# 9468, oda-pg-sink 9469. Each binary listens on 127.0.0.1 unless
# METRICS_ADDR says otherwise: set METRICS_ADDR=0.0.0.0:<port> in a
# container. oda-pg-sink talks to PostgreSQL over plain TCP (tokio-postgres,
# no libpq): it needs no package beyond these.
EXPOSE 9464 9465 9466 9467 9468 9469

# ADMIN_PORT tells the health check which admin port this container's
# binary serves (set it with METRICS_ADDR for the processors); it reads the
# variable itself, so no shell is involved.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["oda-healthcheck"]

ENTRYPOINT ["oda-producer"]
CMD ["run"]
