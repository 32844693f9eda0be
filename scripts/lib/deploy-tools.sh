# shellcheck shell=bash
# The deploy validators that come from Go modules, fetched once into the
# cache at pinned versions (tests/deploy/validate.sh sources this):
#
#   deploy_tool_kustomize <cache dir>       → prints the path of kustomize
#   deploy_tool_compose_schema <cache dir>  → prints the path of compose-spec.json
#
# kustomize is built from its module (sigs.k8s.io/kustomize/kustomize/v5)
# with `go install`, the same renderer `kubectl apply -k` embeds. The
# Compose specification's JSON schema is the one compose-go (the Compose
# specification's reference library, which `docker compose` validates with)
# embeds as schema/compose-spec.json. The go command checks both modules
# against the Go checksum database; the schema's module hash is pinned below
# as well. Go's module and build caches live in a scratch directory inside
# the cache and are removed afterwards: only the binary and the schema stay.
# Needs Go >= 1.24 (kustomize's go.mod); without a `go` on PATH, Debian's
# golang-go is installed (new enough from Debian 13 on).

KUSTOMIZE_VERSION=v5.8.1
COMPOSE_GO_VERSION=v2.16.2
COMPOSE_GO_SUM=h1:pTp1DqQwJzFd85GzlWsSszKA1ABrV/ySqsClujIcWA8=

_deploy_tools_go() { # cache dir → runs go with caches under it
    local cache=$1
    shift
    env GOPATH="$cache/go-scratch" GOMODCACHE="$cache/go-scratch/mod" \
        GOCACHE="$cache/go-scratch/build" GOFLAGS=-modcacherw GO111MODULE=on \
        go "$@"
}

_deploy_tools_need_go() {
    command -v go >/dev/null 2>&1 && return 0
    echo "Installing Debian's golang-go (to build the deploy validators)" >&2
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >/dev/null
    command -v go >/dev/null 2>&1 || { echo "no go command after installing golang-go" >&2; return 1; }
}

deploy_tool_kustomize() {
    local cache=$1
    local dir="$cache/tools/kustomize-$KUSTOMIZE_VERSION"
    if [ ! -x "$dir/kustomize" ]; then
        _deploy_tools_need_go || return 1
        echo "Building kustomize $KUSTOMIZE_VERSION from its Go module into $dir" >&2
        mkdir -p "$dir"
        if ! GOBIN="$dir" _deploy_tools_go "$cache" install \
                "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2; then
            rm -rf "$cache/go-scratch" "$dir"
            echo "cannot build kustomize $KUSTOMIZE_VERSION (it needs Go >= 1.24; this is $(go version))" >&2
            return 1
        fi
        rm -rf "$cache/go-scratch"
    fi
    "$dir/kustomize" version 2>/dev/null | grep -qx "$KUSTOMIZE_VERSION" || {
        echo "$dir/kustomize is not kustomize $KUSTOMIZE_VERSION" >&2
        return 1
    }
    echo "$dir/kustomize"
}

deploy_tool_compose_schema() {
    local cache=$1
    local schema="$cache/tools/compose-spec-$COMPOSE_GO_VERSION.json"
    if [ ! -s "$schema" ]; then
        _deploy_tools_need_go || return 1
        echo "Fetching the Compose schema (compose-go $COMPOSE_GO_VERSION) into $cache/tools" >&2
        mkdir -p "$cache/tools"
        local info
        info=$(_deploy_tools_go "$cache" mod download -json \
            "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION") || {
            rm -rf "$cache/go-scratch"
            echo "cannot download compose-go $COMPOSE_GO_VERSION" >&2
            return 1
        }
        local sum dir
        sum=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",*$/\1/p' <<<"$info")
        dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' <<<"$info")
        if [ "$sum" != "$COMPOSE_GO_SUM" ] || [ ! -s "$dir/schema/compose-spec.json" ]; then
            rm -rf "$cache/go-scratch"
            echo "compose-go $COMPOSE_GO_VERSION: module hash ${sum:-?} is not the pinned $COMPOSE_GO_SUM, or it has no schema" >&2
            return 1
        fi
        cp "$dir/schema/compose-spec.json" "$schema.tmp" && chmod 644 "$schema.tmp" && mv "$schema.tmp" "$schema"
        rm -rf "$cache/go-scratch"
    fi
    echo "$schema"
}
