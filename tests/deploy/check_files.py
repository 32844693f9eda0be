"""Offline checks of deploy/ and docker-compose.yml that need no cluster:
every YAML document parses, and the Grafana dashboard is a dashboard whose
panels query Prometheus.

    python tests/deploy/check_files.py [--self-test]

--self-test feeds each check a broken input and fails unless it is refused.
"""

import json
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def yaml_files():
    files = sorted((ROOT / "deploy").rglob("*.yml")) + sorted((ROOT / "deploy").rglob("*.yaml"))
    compose = ROOT / "docker-compose.yml"
    if compose.exists():
        files.append(compose)
    return files


def check_yaml(text, name):
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    if not documents:
        raise ValueError(f"{name}: no YAML document")
    return documents


def check_dashboard(text, name):
    dashboard = json.loads(text)
    for key in ("title", "uid", "panels"):
        if key not in dashboard:
            raise ValueError(f"{name}: no `{key}`")
    queries = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if "oda_cdc_" not in expr:
                raise ValueError(f"{name}: panel {panel.get('title')!r} queries {expr!r}")
            queries += 1
    if queries == 0:
        raise ValueError(f"{name}: no panel queries a metric")


def main():
    for path in yaml_files():
        check_yaml(path.read_text(encoding="utf-8"), path.relative_to(ROOT))
    for path in sorted((ROOT / "deploy" / "grafana").rglob("*.json")):
        check_dashboard(path.read_text(encoding="utf-8"), path.relative_to(ROOT))
    print(f"ok: {len(yaml_files())} YAML files, dashboards checked")


def self_test():
    broken = {
        "YAML with a bad indent": (check_yaml, "a:\n  b: 1\n c: 2\n"),
        "an empty YAML file": (check_yaml, "# nothing\n"),
        "JSON that does not parse": (check_dashboard, "{\"title\": "),
        "a dashboard without panels": (check_dashboard, "{\"title\": \"x\", \"uid\": \"x\"}"),
        "a panel querying nothing of ours": (
            check_dashboard,
            json.dumps({"title": "x", "uid": "x", "panels": [{"title": "p", "targets": [{"expr": "up"}]}]}),
        ),
    }
    for what, (check, text) in broken.items():
        try:
            check(text, what)
        except (ValueError, yaml.YAMLError):
            continue
        sys.exit(f"check_files: accepted a broken input: {what}")
    print("ok: every broken input refused")


if __name__ == "__main__":
    try:
        if "--self-test" in sys.argv:
            self_test()
        else:
            main()
    except (ValueError, yaml.YAMLError) as error:
        sys.exit(f"check_files: {error}")
