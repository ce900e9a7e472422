# Stand-in for prom/prometheus: Debian's prometheus package (an older 2.x release than the
# image's 3.x; the configuration in observability/prometheus is read alike by both), laid out as
# the official image is: the binary as the entrypoint, data in /prometheus, user nobody.
FROM opd-ci/debian-base:bookworm
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
USER nobody
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
