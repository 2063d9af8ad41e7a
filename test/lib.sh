# Shared by test/run, test/demo/run and test/bench/run: the Debian packages
# the project builds on, a private copy of the PostgreSQL installation with
# the extension installed into it, and throwaway clusters.
#
# PostgreSQL refuses to run as root, so when these scripts run as root every
# server, client and test runs as the "postgres" OS user, from a scratch
# directory under /tmp that user can read and write (a clone may sit under a
# home directory it cannot enter).

PG_MAJOR=15
PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron postgresql-$PG_MAJOR-pgtap pgtap libipc-run-perl make gcc"
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ensure_packages: installs the Debian packages that are missing when run as
# root; otherwise prints the one line to run and fails.
ensure_packages() {
    local missing=() p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "missing Debian packages; as root run:"
        say "  apt-get update && apt-get install -y ${missing[*]}"
        exit 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

SYS_PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin

# Run a command as the unprivileged OS user that owns the clusters.
if [ "$(id -u)" -eq 0 ]; then
    RUN_USER=postgres
    as_user() { runuser -u "$RUN_USER" -- env PATH="$PATH" "$@"; }
else
    RUN_USER=$(id -un)
    as_user() { "$@"; }
fi

# make_scratch PREFIX: a directory under /tmp the cluster user owns.
make_scratch() {
    local d
    d=$(mktemp -d "/tmp/$1.XXXXXX") || die "cannot create a scratch directory"
    chmod 755 "$d"
    [ "$(id -u)" -eq 0 ] && chown "$RUN_USER" "$d"
    printf '%s\n' "$d"
}

# private_install DIR: copies the server installation to DIR/install (the
# server finds its files relative to its own binary, as in PostgreSQL's own
# "make check") and installs the extension there with DESTDIR, built with
# the given compiler flags.  Sets PGBIN and PGXS_DIR.  The system installation is not touched.
private_install() {
    local dir=$1 cflags=${2:-}
    mkdir -p "$dir/install/usr/lib/postgresql" "$dir/install/usr/share/postgresql"
    cp -a "/usr/lib/postgresql/$PG_MAJOR" "$dir/install/usr/lib/postgresql/"
    cp -a "/usr/share/postgresql/$PG_MAJOR" "$dir/install/usr/share/postgresql/"
    PGBIN=$dir/install/usr/lib/postgresql/$PG_MAJOR/bin
    PGXS_DIR=$dir/install/usr/lib/postgresql/$PG_MAJOR/lib/pgxs
    make -C "$TOP" -s clean >/dev/null
    make -C "$TOP" -s PG_CONFIG="$SYS_PGBIN/pg_config" ${cflags:+COPT="$cflags"} >/dev/null || die "build failed"
    make -C "$TOP" -s PG_CONFIG="$SYS_PGBIN/pg_config" DESTDIR="$dir/install" install >/dev/null \
        || die "install into $dir/install failed"
    chmod -R a+rX "$dir/install"
}

# start_cluster DIR PORT [extra postgresql.conf lines]: a throwaway cluster
# in DIR/data, reachable only through the socket directory DIR.
start_cluster() {
    local dir=$1 port=$2 extra=${3:-}
    as_user "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    as_user tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'automation, pg_cron'
cron.database_name = 'postgres'
max_connections = 60
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%m [%p] %q%a '
$extra
EOF
    as_user "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null \
        || { cat "$dir/server.log" >&2; die "the cluster did not start"; }
}

stop_cluster() {
    local dir=$1
    local bin=${PGBIN:-$(echo "$dir"/install/usr/lib/postgresql/*/bin)}
    [ -f "$dir/data/postmaster.pid" ] && as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
    return 0
}
