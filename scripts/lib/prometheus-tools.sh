# Finds Prometheus' tools (prometheus, promtool): on PATH, else unpacked
# from Debian's prometheus package into the cache (apt-get download +
# dpkg-deb -x: no service is installed or started). Sourced by
# scripts/test and scripts/demo.
#
#   prometheus_tool <name> <cache dir>   → prints the tool's path

prometheus_tool() {
    local name=$1 cache=$2
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    local tool="$cache/prometheus/usr/bin/$name"
    if [ ! -x "$tool" ]; then
        echo "Fetching $name (Debian's prometheus package, unpacked into $cache)" >&2
        mkdir -p "$cache/debs"
        if ! (cd "$cache/debs" && apt-get download -qq prometheus >/dev/null 2>&1); then
            local sudo=()
            [ "$(id -u)" -ne 0 ] && sudo=(sudo)
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
            (cd "$cache/debs" && apt-get download -qq prometheus >/dev/null 2>&1) || {
                echo "cannot download Debian's prometheus package" >&2
                return 1
            }
        fi
        dpkg-deb -x "$cache"/debs/prometheus_*.deb "$cache/prometheus"
        rm -f "$cache"/debs/prometheus_*.deb
    fi
    [ -x "$tool" ] || { echo "no $name in Debian's prometheus package" >&2; return 1; }
    echo "$tool"
}
