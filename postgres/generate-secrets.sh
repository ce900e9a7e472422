#!/bin/sh
# Run once by docker-compose.yml's `secrets` service before any database starts: gives every
# service a random password for its database role and one for its server's superuser, each in
# that service's own volume (mounted at /secrets/<service>), which only the service and its
# database mount. Existing files are kept, so `up` again changes nothing; `docker compose
# down -v` deletes them with the data. Nothing secret is in the repository.
set -eu
umask 022
for dir in /secrets/*/; do
    for name in db-password postgres-password; do
        file="${dir}${name}"
        [ -s "$file" ] && continue
        # 32 random bytes, as letters and digits only (no quoting trouble anywhere).
        head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$file.tmp"
        chmod 0444 "$file.tmp"
        mv "$file.tmp" "$file"
        echo "generated ${file#/secrets/}"
    done
done
