# shellcheck shell=bash
# PostgreSQL for the PostgreSQL sink: Debian's binaries, a cluster of the stack's own.
# Sourced by scripts/stack after stack-common.sh.
#
# PostgreSQL refuses to run as root, and CI runs everything as root. So as root the server
# runs as the user postgres (Debian's package creates it) with its files under that user's
# home, one directory per stack directory (~postgres/oda-cdc-stack/<hash of STACK_DIR>):
# postgres cannot enter root's home, where the stack directory usually is. Any other user
# runs it as themselves with its files in $STACK_DIR/postgres. Either way the data
# directory is recorded in $STACK_DIR/postgres-data-dir on the first `up`, so down, status,
# logs and reset find it (and reset deletes it with the rest).
#
# The PostgreSQL directory (PG_BASE) holds:
#   data/              the cluster (initdb), kept across down/up
#   postgres.log       the server's log (the previous start's: postgres.log.previous)
#   initdb.log, pg_ctl.log   output of the last initdb and pg_ctl
#   .s.PGSQL.<port>    the server's Unix socket; clients use TCP on 127.0.0.1

POSTGRES_MIN_VERSION=15
POSTGRES_PORT=${POSTGRES_PORT:-5432}
POSTGRES_START_TIMEOUT=${POSTGRES_START_TIMEOUT:-60}
POSTGRES_URL=postgres://postgres@$STACK_HOST:$POSTGRES_PORT/postgres
POSTGRES_DIR_FILE=$STACK_DIR/postgres-data-dir
POSTGRES_CREATECLUSTER_CONF=/etc/postgresql-common/createcluster.conf

# The pid of a server that already ran from this stack's data when `up` began (empty:
# `up` starts it); set by prepare_postgres, read by scripts/stack.
# shellcheck disable=SC2034
POSTGRES_RUNNING=
# Set by postgres_paths / postgres_use_base and ensure_postgres.
PG_BASE=
PG_DATA=
PG_LOG=
PG_BIN=

# ---------------------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------------------

# Print the bin directory of the newest PostgreSQL in Debian's layout
# (/usr/lib/postgresql/<major>/bin) that is at least POSTGRES_MIN_VERSION, or of exactly
# the given major version; fail when there is none.
postgres_bin_dir() { # [major]
    local dir version best='' best_version=0
    for dir in /usr/lib/postgresql/*/bin; do
        version=${dir#/usr/lib/postgresql/}
        version=${version%/bin}
        [[ $version =~ ^[0-9]+$ ]] || continue
        [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]] || continue
        if [[ -n ${1:-} && $version != "$1" ]]; then continue; fi
        if ((version > best_version)); then
            best=$dir
            best_version=$version
        fi
    done
    [[ -n $best ]] && ((best_version >= POSTGRES_MIN_VERSION)) && printf '%s\n' "$best"
}

# Install Debian's postgresql package (the newest PostgreSQL of the distribution), without
# the cluster "main" on port 5432 that its postinst would otherwise create and start.
install_postgres() {
    local log=$STACK_CACHE_DIR/postgres-install.log conf=$POSTGRES_CREATECLUSTER_CONF
    local -a sudo=()
    command -v apt-get >/dev/null ||
        die "PostgreSQL $POSTGRES_MIN_VERSION or newer not found in /usr/lib/postgresql, and there is no apt-get to install it"
    if ((EUID != 0)); then
        command -v sudo >/dev/null ||
            die "PostgreSQL $POSTGRES_MIN_VERSION or newer not found; installing it needs root or sudo (apt-get install postgresql)"
        sudo=(sudo)
    fi
    take_lock "$STACK_CACHE_DIR/.lock" 9
    postgres_bin_dir >/dev/null && return 0 # someone else just did it
    mkdir -p -- "$STACK_CACHE_DIR"
    say "installing PostgreSQL from Debian's packages (log: $log)"
    if ! grep -qsE '^[[:space:]]*create_main_cluster[[:space:]]*=[[:space:]]*false' "$conf"; then
        # A later line wins in postgresql-common's configuration files.
        "${sudo[@]}" mkdir -p -- "$(dirname -- "$conf")"
        printf '# scripts/stack (oda-cdc) runs a cluster of its own\ncreate_main_cluster = false\n' |
            "${sudo[@]}" tee -a -- "$conf" >/dev/null ||
            die "could not write $conf"
    fi
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } \
        >"$log" 2>&1; then
        show_log_tail "$log" 30
        die "installing PostgreSQL failed (full log: $log)"
    fi
}

# Set PG_BIN to the binaries for this stack's cluster, installing PostgreSQL if needed:
# the version that made the data directory if there is one, else the newest installed.
ensure_postgres() {
    local made=''
    if [[ -s $PG_DATA/PG_VERSION ]]; then read -r made <"$PG_DATA/PG_VERSION"; fi
    if [[ -n $made ]]; then
        PG_BIN=$(postgres_bin_dir "$made") ||
            die "the PostgreSQL data in $PG_DATA was made by PostgreSQL $made, which is not installed (apt-get install postgresql-$made, or \`scripts/stack reset\` to start afresh)"
        return 0
    fi
    if ! PG_BIN=$(postgres_bin_dir); then
        install_postgres
        PG_BIN=$(postgres_bin_dir) ||
            die "no PostgreSQL $POSTGRES_MIN_VERSION or newer in /usr/lib/postgresql after installing Debian's postgresql package"
    fi
}

postgres_version() { # print the major version PG_BIN belongs to
    local version=${PG_BIN#/usr/lib/postgresql/}
    printf '%s\n' "${version%/bin}"
}

# ---------------------------------------------------------------------------------------
# Where the cluster lives
# ---------------------------------------------------------------------------------------

postgres_use_base() { # dir
    PG_BASE=$1
    PG_DATA=$1/data
    PG_LOG=$1/postgres.log
}

# The PostgreSQL directory a fresh stack gets (see the top of this file).
postgres_default_base() {
    local stack home hash
    stack=$(readlink -m -- "$STACK_DIR")
    if ((EUID != 0)); then
        printf '%s/postgres\n' "$stack"
        return 0
    fi
    home=$(getent passwd postgres | cut -d: -f6) || home=''
    [[ -n $home ]] || die "there is no user postgres to run PostgreSQL as (Debian's postgresql package creates it)"
    hash=$(printf '%s' "$stack" | sha256sum | cut -c1-12)
    printf '%s/oda-cdc-stack/%s\n' "${home%/}" "$hash"
}

# Set PG_BASE, PG_DATA and PG_LOG from the record of this stack; fail when it has none
# (PostgreSQL was never started from this stack directory).
postgres_paths() {
    local data
    [[ -s $POSTGRES_DIR_FILE ]] || return 1
    data=$(<"$POSTGRES_DIR_FILE")
    [[ $data == /*/data ]] || die "$POSTGRES_DIR_FILE does not name a data directory: $data"
    postgres_use_base "${data%/data}"
}

# True for a directory that scripts/stack may delete: $STACK_DIR/postgres, or one of the
# per-stack directories under ~postgres/oda-cdc-stack.
postgres_base_is_ours() { # dir
    local home
    [[ $1 == "$(readlink -m -- "$STACK_DIR")/postgres" ]] && return 0
    home=$(getent passwd postgres | cut -d: -f6) || return 1
    [[ -n $home && $1 =~ ^${home%/}/oda-cdc-stack/[0-9a-f]{12}$ ]]
}

# Run a PostgreSQL program as the user the server runs as: as root through runuser, from
# the PostgreSQL directory (postgres may not read the caller's). Our lock fds are closed:
# a server started from here would otherwise hold the stack's lock for its whole life.
pg_run() { # program args...
    local program=$PG_BIN/$1
    shift
    (
        cd -- "$PG_BASE" || exit 1
        exec 8>&- 9>&-
        if ((EUID == 0)); then
            exec runuser -u postgres -- "$program" "$@"
        else
            exec "$program" "$@"
        fi
    )
}

# Create PG_BASE, owned by the user the server runs as.
make_postgres_base() {
    if ((EUID == 0)); then
        install -d -o postgres -g postgres -m 0755 -- "$(dirname -- "$PG_BASE")"
        install -d -o postgres -g postgres -m 0700 -- "$PG_BASE"
    else
        mkdir -p -- "$PG_BASE"
    fi
}

# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------

# Print the pid of the server running from PG_DATA, or fail. A pid counts only when that
# process's working directory is PG_DATA (the postmaster changes into its data
# directory), so a stale postmaster.pid whose pid was reused is never taken for ours.
postgres_pid() {
    local pid cwd
    [[ -n $PG_DATA && -r $PG_DATA/postmaster.pid ]] || return 1
    read -r pid <"$PG_DATA/postmaster.pid" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cwd=$(readlink -- "/proc/$pid/cwd" 2>/dev/null) || return 1
    [[ $cwd == "$(readlink -m -- "$PG_DATA")" ]] || return 1
    printf '%s\n' "$pid"
}

# The port the running server listens on (line 4 of postmaster.pid).
postgres_running_port() {
    sed -n 4p -- "$PG_DATA/postmaster.pid" 2>/dev/null
}

# For `up`, before anything starts: find or choose the PostgreSQL directory, record it,
# provision the binaries and check the port. Sets POSTGRES_RUNNING to the pid of a server
# that already runs from this stack's data (then there is nothing to start).
prepare_postgres() {
    local base orphan pid
    POSTGRES_RUNNING=
    if ! postgres_paths; then
        # A first start: the binaries first, since as root the directory belongs to the
        # user postgres that installing them creates.
        PG_DATA=
        ensure_postgres
        base=$(postgres_default_base) || exit 1
        postgres_use_base "$base"
        if [[ -e $PG_BASE && $PG_BASE != "$(readlink -m -- "$STACK_DIR")"/* ]]; then
            # Left by an earlier stack directory of the same path that was deleted without
            # `reset`; its Kafka data went with it, so this data goes too.
            orphan=$PG_BASE
            if pid=$(postgres_pid); then
                say "postgresql: a server (pid $pid) still runs from $PG_DATA, left by an earlier stack in $STACK_DIR"
                stop_postgres
            fi
            postgres_base_is_ours "$orphan" || die "refusing to delete $orphan"
            rm -rf -- "$orphan"
            say "deleted PostgreSQL data left by an earlier stack in $STACK_DIR: $orphan"
        fi
        printf '%s\n' "$PG_DATA" >"$POSTGRES_DIR_FILE.tmp"
        mv -f -- "$POSTGRES_DIR_FILE.tmp" "$POSTGRES_DIR_FILE"
    else
        ensure_postgres
    fi
    if pid=$(postgres_pid); then
        if [[ $(postgres_running_port) == "$POSTGRES_PORT" ]]; then
            # shellcheck disable=SC2034 # read by scripts/stack's up
            POSTGRES_RUNNING=$pid
            return 0
        fi
        say "postgresql: running on port $(postgres_running_port), restarting it on $POSTGRES_PORT (POSTGRES_PORT)"
        stop_postgres
    fi
    require_port_free "$POSTGRES_PORT" "PostgreSQL" POSTGRES_PORT
}

# initdb on first use. A data directory without PG_VERSION is what an interrupted initdb
# left behind; it is made again.
init_postgres() {
    local log=$PG_BASE/initdb.log
    local -a locale=(--locale=C.UTF-8)
    [[ -s $PG_DATA/PG_VERSION ]] && return 0
    make_postgres_base
    if [[ -e $PG_DATA ]]; then rm -rf -- "$PG_DATA"; fi
    if ! locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=(--no-locale); fi
    say "initialising a PostgreSQL $(postgres_version) cluster in $PG_DATA"
    pg_run initdb -D "$PG_DATA" --auth=trust --username=postgres --encoding=UTF8 "${locale[@]}" \
        >"$log" 2>&1 || {
        show_log_tail "$log"
        die "initdb failed for $PG_DATA (full log: $log)"
    }
}

# Needs prepare_postgres to have run. Waits until the server accepts connections.
start_postgres() {
    local started=$SECONDS socket_dir=$PG_BASE socket_opt log=$PG_BASE/pg_ctl.log
    init_postgres
    # A Unix socket path may have 107 bytes at most; with a longer one run on TCP only.
    if ((${#socket_dir} + 16 > 107)); then socket_dir=''; fi
    printf -v socket_opt '%q' "$socket_dir"
    keep_previous_log "$PG_LOG"
    say "starting PostgreSQL $(postgres_version) on $STACK_HOST:$POSTGRES_PORT"
    if ! pg_run pg_ctl -D "$PG_DATA" -l "$PG_LOG" -w -t "$POSTGRES_START_TIMEOUT" \
        -o "-c listen_addresses=$STACK_HOST -p $POSTGRES_PORT -k $socket_opt -c max_connections=200" \
        start >"$log" 2>&1; then
        show_log_tail "$log" 10
        show_log_tail "$PG_LOG"
        if postgres_pid >/dev/null; then stop_postgres; fi
        die "PostgreSQL did not start within ${POSTGRES_START_TIMEOUT}s (log: $PG_LOG)"
    fi
    if [[ -x $PG_BIN/pg_isready ]] &&
        ! "$PG_BIN/pg_isready" -q -h "$STACK_HOST" -p "$POSTGRES_PORT" -U postgres -d postgres; then
        show_log_tail "$PG_LOG"
        die "PostgreSQL started but does not accept connections on $STACK_HOST:$POSTGRES_PORT (log: $PG_LOG)"
    fi
    say "postgresql ready after $((SECONDS - started))s"
}

# Stop the server running from PG_DATA, if any: a fast shutdown (clients disconnected,
# data flushed), an immediate one if that does not finish within STOP_TIMEOUT seconds.
stop_postgres() {
    local pid exe log=$PG_BASE/pg_ctl.log
    if ! pid=$(postgres_pid); then
        say "postgresql: not running"
        return 0
    fi
    # The running server's own binaries, whatever is installed now.
    exe=$(readlink -- "/proc/$pid/exe" 2>/dev/null || true)
    if [[ -n $exe && -x $(dirname -- "$exe")/pg_ctl ]]; then
        PG_BIN=$(dirname -- "$exe")
    elif [[ -s $PG_DATA/PG_VERSION ]]; then
        PG_BIN=$(postgres_bin_dir "$(<"$PG_DATA/PG_VERSION")") ||
            die "no pg_ctl to stop the PostgreSQL server (pid $pid) running from $PG_DATA"
    fi
    say "postgresql: stopping (pid $pid)"
    if ! pg_run pg_ctl -D "$PG_DATA" -m fast -w -t "$STOP_TIMEOUT" stop >"$log" 2>&1; then
        say "postgresql: still running after ${STOP_TIMEOUT}s, immediate shutdown"
        pg_run pg_ctl -D "$PG_DATA" -m immediate -w -t "$STOP_TIMEOUT" stop >>"$log" 2>&1 || {
            show_log_tail "$log" 10
            die "PostgreSQL (pid $pid) did not stop (log: $PG_LOG)"
        }
    fi
    say "postgresql: stopped"
}

# ---------------------------------------------------------------------------------------
# Commands' parts
# ---------------------------------------------------------------------------------------

# `down`: stop this stack's server, if it ever had one.
postgres_down() {
    if postgres_paths; then
        stop_postgres
    else
        say "postgresql: not running"
    fi
}

# `reset`, after `down`: delete the PostgreSQL directory. As root it lies outside the
# stack directory; the default one of this stack directory goes too, should its record
# be lost.
postgres_reset() {
    local base
    local -a bases=()
    if postgres_paths; then bases+=("$PG_BASE"); fi
    if ((EUID == 0)) && getent passwd postgres >/dev/null; then
        base=$(postgres_default_base) || exit 1
        bases+=("$base")
    fi
    for base in "${bases[@]}"; do
        [[ -e $base ]] || continue
        postgres_use_base "$base"
        if postgres_pid >/dev/null; then stop_postgres; fi
        postgres_base_is_ours "$base" ||
            die "refusing to delete $base: not a PostgreSQL directory of scripts/stack"
        rm -rf -- "$base"
        say "deleted $base"
    done
}

# One line for `status`; fails (3) when the server does not run.
postgres_status() {
    local pid version
    if postgres_paths && pid=$(postgres_pid); then
        version=$(cat -- "$PG_DATA/PG_VERSION" 2>/dev/null || echo '?')
        printf 'postgresql: running (pid %s, postgres://postgres@%s:%s/postgres, PostgreSQL %s)\n' \
            "$pid" "$STACK_HOST" "$(postgres_running_port)" "$version"
        return 0
    fi
    printf 'postgresql: stopped (%s)\n' "$POSTGRES_URL"
    return 3
}

# The server's log file for `logs` (where it will be if PostgreSQL never ran here).
postgres_log_file() {
    local base=$STACK_DIR/postgres
    if ! postgres_paths; then
        if ((EUID != 0)) || getent passwd postgres >/dev/null; then
            base=$(postgres_default_base) || exit 1
        fi
        postgres_use_base "$base"
    fi
    printf '%s\n' "$PG_LOG"
}

# psql on the stack's server (the client of the newest PostgreSQL installed, or any psql).
postgres_psql() { # psql args...
    local psql
    if PG_BIN=$(postgres_bin_dir) && [[ -x $PG_BIN/psql ]]; then
        psql=$PG_BIN/psql
    else
        psql=$(command -v psql) || die "psql not found: \`scripts/stack up\` installs PostgreSQL"
    fi
    exec "$psql" -h "$STACK_HOST" -p "$POSTGRES_PORT" -U postgres postgres "$@"
}
