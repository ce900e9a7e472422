# Stand-in for nats:<version>-alpine: the same nats-server release, and wget for the healthcheck.
FROM opd-ci/debian-base:bookworm
COPY nats-server /usr/local/bin/nats-server
EXPOSE 4222 6222 8222
CMD ["nats-server"]
