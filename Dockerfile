# syntax=docker/dockerfile:1
#
# One image for every oda-cdc binary: oda-producer (the default entrypoint),
# oda-normalize, oda-votes, oda-history, oda-passthrough, oda-replay and
# oda-sim. Pick another one with `--entrypoint` (docker) or `command:` (Kubernetes, compose).
#
#   docker build -t oda-cdc .
#   docker run --rm -e KAFKA_BROKERS=kafka:9092 -e METRICS_ADDR=0.0.0.0:9464 oda-cdc
#   docker run --rm --entrypoint oda-normalize -e ADMIN_PORT=9465 -e METRICS_ADDR=0.0.0.0:9465 oda-cdc

# --- builder ---------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

# librdkafka is compiled from source by rdkafka-sys (feature cmake-build) and
# links OpenSSL, libcurl (OAUTHBEARER/OIDC) and zlib dynamically; zstd is
# built in. libsasl2-dev is only needed if the GSSAPI feature is switched on;
# it is kept so that change needs no Dockerfile edit.
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
    cargo build --release --locked -p oda-producer -p oda-consumers -p oda-sim \
 && mkdir -p /out \
 && cp target/release/oda-producer target/release/oda-normalize \
       target/release/oda-votes target/release/oda-history target/release/oda-passthrough \
       target/release/oda-replay target/release/oda-sim /out/

# --- runtime ---------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to oda.ft.dk, the registry and SASL_SSL brokers.
# libssl3/libcurl4/libsasl2-2: what the librdkafka build links against.
# curl: the HEALTHCHECK below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates libssl3 libsasl2-2 libcurl4 curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 oda \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin oda

COPY --from=builder /out/ /usr/local/bin/

# No config file is baked in: configure with environment variables, or mount
# a TOML file (Kubernetes: /etc/oda-cdc/oda-cdc.toml) and pass `--config`.
# Numeric, so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 10001:10001

# Admin ports (/metrics, /healthz, /readyz): oda-producer 9464,
# oda-normalize 9465, oda-votes 9466, oda-passthrough 9467, oda-history
# 9468. Each binary listens on 127.0.0.1 unless METRICS_ADDR says otherwise: set
# METRICS_ADDR=0.0.0.0:<port> in a container.
EXPOSE 9464 9465 9466 9467 9468

# ADMIN_PORT tells the health check which admin port this container's
# binary serves (set it with METRICS_ADDR for the processors). The shell
# expands it at check time; `sh -c` in exec form is what the shell form runs.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS \"http://127.0.0.1:${ADMIN_PORT:-9464}/healthz\" || exit 1"]

# SIGTERM: finish or abort the open transaction and exit 0 within 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["oda-producer"]
CMD ["run"]
