# Stand-in for rust:<version>-slim-bookworm, for building the real Dockerfile without a
# registry: the Debian base, a C compiler (as in the official image) and the host's toolchain
# of the pinned version. The host's CA bundle comes along so that cargo reaches crates.io
# wherever the host does (some networks intercept TLS with their own CA).
FROM opd-ci/debian-base:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY rust /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p "$CARGO_HOME/bin" && cargo --version
