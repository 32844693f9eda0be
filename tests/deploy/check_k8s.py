"""Offline checks of deploy/k8s, no cluster and no kustomize needed:

- every resource the base lists, if of a core Kubernetes kind, validates
  strictly against that kind's JSON schema (kubernetes-validate);
- the custom resources (KEDA ScaledObject, ServiceMonitor, Strimzi
  KafkaTopic) have the fields their operators require, since no offline
  schema exists for them;
- the KafkaTopics are exactly SPEC §3's entity topics of the entity model,
  their processed topics, and the producer's own topics.

    python tests/deploy/check_k8s.py [--self-test]
"""

import json
import pathlib
import sys

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
K8S_VERSION = "1.33.0"
CUSTOM = {"ScaledObject", "ServiceMonitor", "KafkaTopic"}


class Invalid(Exception):
    pass


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def get(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def require(obj, fields, what):
    missing = [f for f in fields if get(obj, f) in (None, "", [], {})]
    if missing:
        raise Invalid(f"{what}: missing {', '.join(missing)}")


def check_core(doc, what):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise Invalid(f"{what}: {error.message} at {'/'.join(map(str, error.path))}") from error


def check_scaled_object(doc, what):
    require(doc, ["metadata.name", "spec.scaleTargetRef.name", "spec.triggers"], what)
    for trigger in doc["spec"]["triggers"]:
        require(trigger, ["type", "metadata"], what)
        if trigger["type"] == "kafka":
            require(trigger, ["metadata.bootstrapServers", "metadata.consumerGroup", "metadata.lagThreshold"], what)
    if doc["spec"].get("maxReplicaCount", 100) > 6:
        raise Invalid(f"{what}: more replicas than the 6 partitions of a topic")


def check_service_monitor(doc, what):
    require(doc, ["metadata.name", "spec.selector", "spec.endpoints"], what)
    for endpoint in doc["spec"]["endpoints"]:
        require(endpoint, ["port", "path"], what)


def check_custom(doc, what):
    kind = doc.get("kind")
    if kind == "ScaledObject":
        check_scaled_object(doc, what)
    elif kind == "ServiceMonitor":
        check_service_monitor(doc, what)
    elif kind == "KafkaTopic":
        require(doc, ["metadata.name"], what)


def check_document(doc, what):
    require(doc, ["apiVersion", "kind", "metadata.name"], what)
    if doc["kind"] in CUSTOM:
        check_custom(doc, what)
    else:
        check_core(doc, what)


def slug(name):
    return name.lower().replace("æ", "ae").replace("ø", "oe").replace("å", "aa")


def check_topics():
    model = json.loads((ROOT / "schemas" / "oda-metadata.json").read_text(encoding="utf-8"))
    views = {"Aktstykke", "Almdel", "Debat", "EUsag", "Forslag", "Sambehandlinger"}
    entities = {f"parliament-{slug(s['entity'])}" for s in model if s["entity"] not in views}
    topics_dir = BASE / "topics"
    names = {}
    for path in sorted(topics_dir.glob("*-topics.yaml")):
        for doc in documents(path):
            if doc.get("kind") == "KafkaTopic":
                names[doc["metadata"]["name"]] = doc["metadata"].get("labels", {}).get("oda-cdc/topic-class")
    entity_topics = {n for n, c in names.items() if c == "entity"}
    if entity_topics != entities:
        raise Invalid(f"entity KafkaTopics differ from the model: missing {sorted(entities - entity_topics)}, extra {sorted(entity_topics - entities)}")
    processed = {n for n, c in names.items() if c == "processed"}
    if processed != {f"{t}-processed" for t in entities}:
        raise Invalid("processed KafkaTopics are not one per entity topic")
    for needed in ("parliament-dlq", "parliament-cdc-checkpoints", "parliament-cdc-state", "parliament-cdc-signals", "parliament-replay-log"):
        if needed not in names:
            raise Invalid(f"no KafkaTopic {needed}")
    kustomization = documents(topics_dir / "kustomization.yaml")[0]
    if "strimzi.io/cluster" not in json.dumps(kustomization):
        raise Invalid("topics/kustomization.yaml does not label the topics for a Strimzi cluster")
    for patch in kustomization.get("patches", []):
        value = yaml.safe_load(patch["patch"])[0]["value"]
        what = f"topic patch {patch['target']}"
        require(value, ["partitions", "replicas", "config"], what)
        if "cleanup.policy" not in value["config"]:
            raise Invalid(f"{what}: no cleanup.policy")
    return len(names)


def main():
    kustomization = documents(BASE / "kustomization.yaml")[0]
    checked = 0
    for resource in kustomization["resources"]:
        path = BASE / resource
        for doc in documents(path):
            check_document(doc, f"{path.relative_to(ROOT)} {doc.get('kind')}/{get(doc, 'metadata.name')}")
            checked += 1
    for extra in ("hpa-oda-normalize.yaml", "secret.yaml"):
        for doc in documents(BASE / extra):
            check_document(doc, f"{extra} {doc.get('kind')}")
            checked += 1
    topics = check_topics()
    print(f"ok: {checked} resources valid (Kubernetes {K8S_VERSION}), {topics} KafkaTopics match SPEC §3")


def self_test():
    deployment = documents(BASE / "producer-deployment.yaml")[0]
    broken_deployment = json.loads(json.dumps(deployment))
    broken_deployment["spec"]["replicas"] = "one"
    unknown_field = json.loads(json.dumps(deployment))
    unknown_field["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    scaled = documents(BASE / "scaledobject.yaml")[0]
    no_triggers = json.loads(json.dumps(scaled))
    no_triggers["spec"]["triggers"] = []
    monitor = documents(BASE / "servicemonitor.yaml")[0]
    no_path = json.loads(json.dumps(monitor))
    no_path["spec"]["endpoints"][0].pop("path")
    cases = {
        "replicas as text": broken_deployment,
        "a misspelt container field": unknown_field,
        "a ScaledObject without triggers": no_triggers,
        "a ServiceMonitor endpoint without path": no_path,
    }
    for what, doc in cases.items():
        try:
            check_document(doc, what)
        except Invalid:
            continue
        sys.exit(f"check_k8s: accepted a broken input: {what}")
    print("ok: every broken input refused")


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        self_test()
    else:
        main()
