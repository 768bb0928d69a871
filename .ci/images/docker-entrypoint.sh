#!/bin/sh
# The entrypoint of the tests' PostgreSQL image, built from Debian's packages: it initialises
# and starts the server as the official `postgres` image's entrypoint does. On a first start
# (an empty PGDATA): initdb with POSTGRES_USER (postgres), POSTGRES_PASSWORD and
# POSTGRES_INITDB_ARGS; remote connections by POSTGRES_HOST_AUTH_METHOD (scram-sha-256);
# POSTGRES_DB created; the files in /docker-entrypoint-initdb.d run (*.sql, *.sh), all on a
# temporary server that only listens on its socket (its log on standard output). Then the
# server itself (its log on standard error).
set -eu

# Arguments alone are the server's.
if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user=${POSTGRES_USER:-postgres}
    method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$method" != trust ]; then
        echo "Set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without one." >&2
        exit 1
    fi
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS holds several arguments
        initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
        rm -f "$pwfile"
    else
        # shellcheck disable=SC2086
        initdb --username="$user" ${POSTGRES_INITDB_ARGS:-}
    fi
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all $method" >>"$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    db=${POSTGRES_DB:-$user}
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
            -c "CREATE DATABASE \"$db\""
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
            *.sh) . "$f" ;;
            *.sql) psql -v ON_ERROR_STOP=1 --username="$user" --dbname="$db" -f "$f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
