#!/bin/sh
# Run by docker-compose.yml's `secrets` one-shot (as root, in the platform image): generates the
# development CA, certificates and nkeys with `opd-nats credentials` into the administrator's
# volume, then hands each process only what it needs:
#   /nats/admin    everything (CA key, every seed): the `nats-setup` job only
#   /nats/server   ca.pem, server.pem, server-key.pem, nkeys.env (public keys): the NATS nodes
#   /nats/<svc>    ca.pem, its own seed as seed.nk, and its client certificate (client.pem,
#                  client-key.pem, for mutual TLS): that service only
# Existing files are kept, so `up` again changes nothing; `docker compose down -v` deletes them.
set -eu
umask 077
opd-nats credentials /nats/admin
# The services and the nats-setup job run as the image's user, opd (uid 10001).
chown -R 10001:10001 /nats/admin
install -m 0444 /nats/admin/ca.pem /nats/admin/server.pem /nats/admin/nkeys.env /nats/server/
install -m 0400 /nats/admin/server-key.pem /nats/server/
for service in registration inspection treatment release; do
    install -m 0444 /nats/admin/ca.pem "/nats/$service/ca.pem"
    install -m 0400 -o 10001 -g 10001 "/nats/admin/$service.nk" "/nats/$service/seed.nk"
    install -m 0444 "/nats/admin/$service.pem" "/nats/$service/client.pem"
    install -m 0400 -o 10001 -g 10001 "/nats/admin/$service-key.pem" "/nats/$service/client-key.pem"
done
echo "NATS credentials in place"
