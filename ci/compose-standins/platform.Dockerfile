# Stand-in for the image the root Dockerfile builds: the same layout (service binaries in
# /usr/local/bin, curl for the healthcheck, a non-root user), with binaries built on the host.
FROM opd-ci/debian-base:bookworm
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin opd
COPY bin/ /usr/local/bin/
USER opd
ENV OPD_HTTP__HOST=0.0.0.0 \
    OPD_LOG__FORMAT=json
CMD ["registration"]
