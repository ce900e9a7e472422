# One image for the four OPD services; the command picks the service:
#   docker build -t opd-platform .
#   docker run opd-platform registration
#
# Builds with the committed sqlx offline data (.sqlx/), so no database is needed, and caches the
# dependencies in their own layer with cargo-chef, so a code change rebuilds only our crates.

# The build and runtime images; both Debian 12 (bookworm), so the binaries find the same glibc.
# Override them to build from a mirror: --build-arg RUST_IMAGE=… --build-arg RUNTIME_IMAGE=…
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
ENV SQLX_OFFLINE=true
# The five services and the NATS exporter (the compose file's observability profile): test
# support (opd-testing) and the end-to-end tests stay out of the image.
RUN cargo build --release --locked -p registration -p inspection -p treatment -p release \
          -p board -p opd-nats-exporter -p opd-nats-admin \
    && mkdir /out \
    && cp target/release/registration target/release/inspection \
          target/release/treatment target/release/release target/release/board \
          target/release/opd-nats-exporter target/release/opd-nats /out/

FROM ${RUNTIME_IMAGE} AS runtime
# curl answers the container healthcheck (GET /readyz).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin opd
COPY --from=builder /out/ /usr/local/bin/
USER opd
ENV OPD_HTTP__HOST=0.0.0.0 \
    OPD_LOG__FORMAT=json
CMD ["registration"]
