# shellcheck shell=bash
# Shared settings and helpers for scripts/stack. Sourced, never executed on its own.
#
# Everything here is plain bash plus coreutils; the only other programs the stack needs
# are a JDK (java, with its compiler for the probe), curl and, for first-time provisioning,
# Maven.

# ---------------------------------------------------------------------------------------
# Versions and locations
# ---------------------------------------------------------------------------------------

KAFKA_VERSION=4.3.1
# kafka_2.13's published POM brings log4j-core and slf4j-api 1.7 but no binding between
# them (the binary distribution adds it separately); without it the broker logs nothing.
# Keep this in step with the log4j-core version that kafka_2.13 resolves to.
KAFKA_LOG4J_VERSION=2.25.4

# Apicurio 3.2+ needs Java 21; 3.0.x still runs on Java 17 and is the fallback.
REGISTRY_DEFAULT_VERSION=3.3.3
REGISTRY_FALLBACK_VERSION=3.0.9

MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
# Used only when Maven cannot resolve an artifact (Apicurio 3.0.9's parent POM is not on
# Central, so Maven refuses to fetch its tarball even though the tarball itself is there).
MAVEN_CENTRAL_URL=${MAVEN_CENTRAL_URL:-https://repo.maven.apache.org/maven2}

: "${HOME:?HOME must be set}"
# Downloads are cached per version and shared by every checkout; never deleted by us.
STACK_CACHE_DIR=${ODA_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oda-cdc}
# Broker data, configs, logs and pid files; survives down/up, removed by reset.
STACK_DIR=${ODA_STACK_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/oda-cdc/stack}
STACK_DIR=${STACK_DIR%/}
STACK_CACHE_DIR=${STACK_CACHE_DIR%/}

STACK_HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
REGISTRY_PORT=${REGISTRY_PORT:-8081}
# Apicurio after 3.0.x also opens a Quarkus management interface (health, metrics), by default on
# 0.0.0.0:9000, a port many other tools use. Pin it to loopback and a less contested port.
REGISTRY_MANAGEMENT_PORT=${REGISTRY_MANAGEMENT_PORT:-9581}

KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
# The KRaft controller of a cluster (`up --brokers 3`) holds metadata only.
CONTROLLER_HEAP_OPTS=${CONTROLLER_HEAP_OPTS:--Xms128m -Xmx384m}
# Its node id, clear of the brokers' 1, 2, 3.
CONTROLLER_ID=100
REGISTRY_HEAP_OPTS=${REGISTRY_HEAP_OPTS:--Xmx512m}

BROKER_START_TIMEOUT=${BROKER_START_TIMEOUT:-90}
REGISTRY_START_TIMEOUT=${REGISTRY_START_TIMEOUT:-120}
STOP_TIMEOUT=20
MIN_FREE_MIB=1024

# One broker; a cluster's list is set once its size is known (scripts/stack).
KAFKA_BOOTSTRAP=$STACK_HOST:$KAFKA_PORT
REGISTRY_URL=http://$STACK_HOST:$REGISTRY_PORT
CCOMPAT_URL=$REGISTRY_URL/apis/ccompat/v7

RUN_DIR=$STACK_DIR/run
LOG_DIR=$STACK_DIR/logs
CONF_DIR=$STACK_DIR/config
KAFKA_DATA_DIR=$STACK_DIR/kafka-logs
CLUSTER_ID_FILE=$STACK_DIR/cluster-id
# Written when we create the data dir; reset refuses to delete a directory without it.
STACK_MARKER=$STACK_DIR/.oda-cdc-stack

# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------

# Progress goes to stderr so stdout stays clean for machine-readable output
# (addresses from `up`, the classpath from `tools-classpath`).
say() { printf 'stack: %s\n' "$*" >&2; }
die() {
    printf 'stack: error: %s\n' "$*" >&2
    exit 1
}

# Print the last lines of a log file, indented, for error reports.
show_log_tail() { # file [lines]
    local file=$1 lines=${2:-30}
    if [[ -s $file ]]; then
        printf 'stack: ---- last %s lines of %s ----\n' "$lines" "$file" >&2
        tail -n "$lines" -- "$file" | sed 's/^/    /' >&2
    fi
}

# ---------------------------------------------------------------------------------------
# Tools: Java, Maven, curl
# ---------------------------------------------------------------------------------------

# Print the feature release (17, 21, 25, ...) of a java binary, or fail.
java_major() { # java-binary
    local out
    out=$("$1" -version 2>&1) || return 1
    [[ $out =~ version\ \"([0-9]+)(\.([0-9]+))? ]] || return 1
    if [[ ${BASH_REMATCH[1]} == 1 ]]; then # 1.8 style
        printf '%s\n' "${BASH_REMATCH[3]}"
    else
        printf '%s\n' "${BASH_REMATCH[1]}"
    fi
}

# The JDK that runs the broker and the probe: $JAVA_HOME if set, else `java` on PATH.
# Kafka 4 needs 17+; the probe is run with the source launcher, which needs the compiler
# module that only a full JDK has.
STACK_JAVA=
require_java() {
    [[ -n $STACK_JAVA ]] && return 0
    local java major
    if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        java=$JAVA_HOME/bin/java
    else
        java=$(command -v java) ||
            die "Java not found: install a JDK 17 or newer (e.g. apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
    fi
    major=$(java_major "$java") || die "cannot determine the version of $java"
    ((major >= 17)) || die "$java is Java $major; Kafka $KAFKA_VERSION needs Java 17 or newer (set JAVA_HOME)"
    [[ -x $(dirname -- "$(readlink -f -- "$java")")/javac ]] ||
        die "$java belongs to a JRE without javac; install a full JDK (e.g. openjdk-17-jdk-headless)"
    STACK_JAVA=$java
}

require_maven() {
    command -v mvn >/dev/null ||
        die "Maven (mvn) not found: it is needed once to download $1 into $STACK_CACHE_DIR (e.g. apt-get install maven)"
}

require_curl() {
    command -v curl >/dev/null || die "curl not found: it is needed to talk to the schema registry (e.g. apt-get install curl)"
}

# Every java binary worth considering for the registry, one per line, without duplicates.
java_candidates() {
    local c seen=" " real
    for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
        [[ -n $c && -x $c ]] || continue
        real=$(readlink -f -- "$c") || continue
        [[ $seen == *" $real "* ]] && continue
        seen+="$real "
        printf '%s\n' "$real"
    done
}

# Print the newest java with at least the given feature release, or fail.
find_java_at_least() { # min-major
    local c major best='' best_major=0
    while IFS= read -r c; do
        major=$(java_major "$c") || continue
        if ((major >= $1 && major > best_major)); then
            best=$c
            best_major=$major
        fi
    done < <(java_candidates)
    [[ -n $best ]] && printf '%s\n' "$best"
}

# ---------------------------------------------------------------------------------------
# Disk space, ports, locks
# ---------------------------------------------------------------------------------------

require_free_space() { # dir
    local dir=$1 probe=$1 avail
    while [[ ! -d $probe ]]; do probe=$(dirname -- "$probe"); done
    avail=$(df -Pk -- "$probe" | { read -r _ && read -r _ _ _ a _ && echo "$a"; }) || return 0
    [[ $avail =~ ^[0-9]+$ ]] || return 0
    ((avail >= MIN_FREE_MIB * 1024)) ||
        die "not enough disk space for $dir: $((avail / 1024)) MiB free, need at least $MIN_FREE_MIB MiB"
}

# True when any local socket listens on the TCP port, whatever address it is bound to.
# Reads /proc/net/tcp{,6} (state 0A = LISTEN) so no ss/netstat is needed.
port_in_use() { # port
    local hex f _sl local_addr _rem state _rest
    hex=$(printf '%04X' "$1")
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] || continue
        while read -r _sl local_addr _rem state _rest; do
            [[ $state == 0A && ${local_addr##*:} == "$hex" ]] && return 0
        done <"$f"
    done
    return 1
}

require_port_free() { # port what env-var
    if port_in_use "$1"; then
        die "port $1 ($2) is already in use by a process that scripts/stack did not start; stop it or set $3 to another port"
    fi
}

# Serialise up/down/reset (and provisioning) so two callers cannot start two brokers.
# The lock file sits beside the directory it guards so `reset` can delete that directory.
# Locks are held on a numbered fd until the script exits: 8 for the stack, 9 for the cache.
# spawn closes both fds for the services, or a long-running java would hold the lock.
HELD_LOCKS=" "
take_lock() { # lock-file fd
    [[ $HELD_LOCKS == *" $2 "* ]] && return 0
    command -v flock >/dev/null || return 0
    mkdir -p -- "$(dirname -- "$1")"
    eval "exec $2>\"\$1\""
    flock -w 600 "$2" || die "timed out waiting for the lock $1 (is another scripts/stack running?)"
    HELD_LOCKS+="$2 "
}

# ---------------------------------------------------------------------------------------
# Processes we started
# ---------------------------------------------------------------------------------------
#
# Every java we start carries -Doda.cdc.stack.role=<role> and -Doda.cdc.stack.dir=<dir> on
# its command line. A pid only counts as ours when /proc/<pid>/cmdline has both, so a stale
# pid file whose pid was reused by something else is never signalled, and a zombie (empty
# cmdline) counts as gone.

pid_file() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }

is_ours() { # pid role
    local args
    [[ -r /proc/$1/cmdline ]] || return 1
    args=$(tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline") || return 1
    grep -qxF -- "-Doda.cdc.stack.role=$2" <<<"$args" &&
        grep -qxF -- "-Doda.cdc.stack.dir=$STACK_DIR" <<<"$args"
}

# Print the pid of our running process for the role, or fail.
running_pid() { # role
    local file pid
    file=$(pid_file "$1")
    [[ -r $file ]] || return 1
    read -r pid <"$file" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    is_ours "$pid" "$1" || return 1
    printf '%s\n' "$pid"
}

# Keep the log of the previous run as <log>.previous, so error reports show only this run.
keep_previous_log() { # file
    if [[ -e $1 ]]; then mv -f -- "$1" "$1.previous"; fi
}

# Start a command detached from the caller: own session (setsid), immune to hangups
# (nohup), stdin from /dev/null, stdout+stderr to the log. The outer subshell exits at
# once, so the java process is re-parented and outlives this script and its shell.
# The inner bash writes its own pid and then execs java, so the pid file names java itself.
spawn() { # role log-file command...
    local role=$1 log=$2 file i
    shift 2
    file=$(pid_file "$role")
    rm -f -- "$file"
    keep_previous_log "$log"
    (
        cd -- "$STACK_DIR" || exit 1
        exec 8>&- 9>&- # our lock fds must not live on in the service
        # shellcheck disable=SC2016 # $$, $0 and $@ are for the inner bash
        setsid nohup bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$file" "$@" \
            </dev/null >"$log" 2>&1 &
    )
    for ((i = 0; i < 100; i++)); do
        [[ -s $file ]] && return 0
        sleep 0.1
    done
    die "$role did not start (no pid file $file)"
}

# SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL. Only ever signals a pid that
# is_ours confirms.
stop_role() { # role label
    local role=$1 label=$2 file pid i
    file=$(pid_file "$role")
    if ! pid=$(running_pid "$role"); then
        if [[ -e $file ]]; then
            rm -f -- "$file"
            say "$label: not running (removed stale pid file)"
        else
            say "$label: not running"
        fi
        return 0
    fi
    say "$label: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        is_ours "$pid" "$role" || break
        sleep 0.1
    done
    if is_ours "$pid" "$role"; then
        say "$label: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            is_ours "$pid" "$role" || break
            sleep 0.1
        done
        is_ours "$pid" "$role" && die "$label (pid $pid) survived SIGKILL"
    fi
    rm -f -- "$file"
    say "$label: stopped"
}
