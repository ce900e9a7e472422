#!/bin/sh
# Run by docker-compose.yml's `secrets` one-shot (as root, in the platform image): generates the
# development CA, certificates and nkeys with `opd-nats credentials` into the administrator's
# volume, then hands each process only what it needs:
#   /nats/admin    everything (CA key, every seed): the `nats-setup` job only
#   /nats/server   ca.pem, server.pem, server-key.pem, nkeys.env (public keys), and the routes'
#                  route-ca.pem, route.pem, route-key.pem: the NATS nodes only
#   /nats/clinic-link  the clinic's link identity (seed.nk, client.pem, client-key.pem): the
#                  clinic's NATS server only (clinic profile)
#   /nats/<svc>    ca.pem and its own seed as seed.nk: that service only; with
#                  NATS_TLS_VERIFY=true (mutual TLS) also its client certificate (client.pem,
#                  client-key.pem). A certificate a service holds opens no route: the routes
#                  have a CA of their own.
# Existing files are kept, so `up` again changes nothing; `docker compose down -v` deletes them.
set -eu
umask 077
opd-nats credentials /nats/admin
# The services and the nats-setup job run as the image's user, opd (uid 10001).
chown -R 10001:10001 /nats/admin
install -m 0444 /nats/admin/ca.pem /nats/admin/server.pem /nats/admin/nkeys.env \
    /nats/admin/route-ca.pem /nats/admin/route.pem /nats/server/
install -m 0400 /nats/admin/server-key.pem /nats/admin/route-key.pem /nats/server/
for service in registration inspection treatment release board; do
    install -m 0444 /nats/admin/ca.pem "/nats/$service/ca.pem"
    # The HTTP token issuer's public key: every service verifies bearer tokens with it.
    install -m 0444 /nats/admin/auth-jwks.json "/nats/$service/auth-jwks.json"
    install -m 0400 -o 10001 -g 10001 "/nats/admin/$service.nk" "/nats/$service/seed.nk"
    if [ "${NATS_TLS_VERIFY:-false}" = true ]; then
        install -m 0444 "/nats/admin/$service.pem" "/nats/$service/client.pem"
        install -m 0400 -o 10001 -g 10001 "/nats/admin/$service-key.pem" "/nats/$service/client-key.pem"
    else
        rm -f "/nats/$service/client.pem" "/nats/$service/client-key.pem"
    fi
done
# The clinic's server (the nats image's user, root) presents the link's certificate always: the
# link is mutual TLS whatever NATS_TLS_VERIFY says.
install -m 0400 /nats/admin/clinic.nk /nats/clinic-link/seed.nk
install -m 0444 /nats/admin/clinic.pem /nats/clinic-link/client.pem
install -m 0400 /nats/admin/clinic-key.pem /nats/clinic-link/client-key.pem
echo "NATS credentials in place"
