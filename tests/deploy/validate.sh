#!/usr/bin/env bash
# Offline checks of the deploy files (Prometheus, YAML, dashboard,
# Kubernetes), each validator also fed a broken
# input it must refuse (a validator that accepts anything checks nothing).
#
#   PROMTOOL=… TEST_PYTHON=… tests/deploy/validate.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PROMTOOL=${PROMTOOL:-promtool}
PYTHON=${TEST_PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/oda-cdc-deploy.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

refuses() { # description command…
    local what=$1; shift
    if "$@" >"$WORK/out" 2>&1; then
        echo "validate: the check accepted a broken input ($what): $*" >&2
        exit 1
    fi
}

echo "promtool: scrape config and alert rules"
"$PROMTOOL" check config deploy/prometheus/prometheus.yml >/dev/null
"$PROMTOOL" check rules deploy/prometheus/alerts.yml >/dev/null
sed 's/^\(        expr: oda_cdc_circuit_state\) == 2/\1 == (2/' deploy/prometheus/alerts.yml >"$WORK/alerts.yml"
refuses "an unbalanced expression" "$PROMTOOL" check rules "$WORK/alerts.yml"
sed 's/scrape_interval: 15s/scrape_interval: fifteen/' deploy/prometheus/prometheus.yml >"$WORK/prometheus.yml"
cp deploy/prometheus/alerts.yml "$WORK/"
refuses "a bad duration" "$PROMTOOL" check config "$WORK/prometheus.yml"

echo "files: YAML, the dashboard JSON"
"$PYTHON" tests/deploy/check_files.py
"$PYTHON" tests/deploy/check_files.py --self-test

echo "Kubernetes: core kinds against their schemas, custom resources, topics"
"$PYTHON" tests/deploy/check_k8s.py
"$PYTHON" tests/deploy/check_k8s.py --self-test
