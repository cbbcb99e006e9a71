# syntax=docker/dockerfile:1
# auditflow container image.
#   docker build -t auditflow .
#   docker run --rm -v $PWD/config/auditflow.toml:/etc/auditflow/auditflow.toml:ro auditflow \
#     run --config /etc/auditflow/auditflow.toml

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS builder
# rdkafka builds librdkafka from source (ssl, libz, zstd features): it needs
# pkg-config + OpenSSL and zlib headers; cmake for the bundled C builds.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin auditflow \
 && install -Dm755 target/release/auditflow /out/auditflow

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin auditflow
COPY --from=builder /out/auditflow /usr/local/bin/auditflow
COPY config/auditflow.toml /etc/auditflow/auditflow.toml
USER auditflow:auditflow
ENTRYPOINT ["auditflow"]
CMD ["run", "--config", "/etc/auditflow/auditflow.toml"]
