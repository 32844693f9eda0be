"""Offline checks of deploy/k8s, no cluster needed. Each kustomization (the
base, the topics, the dev and prod overlays) is rendered with kustomize,
and what it renders is checked:

- every resource of a core Kubernetes kind validates strictly against that
  kind's JSON schema (kubernetes-validate, Kubernetes 1.33);
- the custom resources (KEDA ScaledObject and TriggerAuthentication,
  ServiceMonitor, Strimzi KafkaTopic) have the fields their operators
  require, since no offline schema exists for them;
- the references between the rendered resources resolve, as the API server
  or the operators would need them to: selectors select pods, named ports
  and volumes exist, the ScaledObject's target and TriggerAuthentication,
  the ServiceMonitor's Services and ports, the ServiceAccount, ConfigMap
  and Secret keys (the Secret is made out of band: base/secret.yaml lists
  its keys), the images are tagged and run binaries the image has, and
  no secret (a password, a database URL) is written into an env value;
- every patch and image override of a kustomization changes what it
  renders (kustomize itself refuses a strategic-merge patch for a missing
  resource, but silently skips a patch or image whose target matches none);
- the KafkaTopics are exactly the entity topics (contract.md#topics) of the entity model,
  their processed topics, the producer's own topics, and the topics of the
  processors with partitioned state (named as the code names them: the
  output, compacted or kept for good; the repartition topic never
  compacted; the compacted changelog with as many partitions as the
  repartition topic, or at least as many as each input topic of a
  processor whose state follows its inputs' partitions, the inputs being
  the code's defaults unless the rendered config chooses `entities`);
- base/hpa-*.yaml and base/secret.yaml, on purpose in no kustomization,
  validate too (the HPAs in place of the ScaledObjects), and every other
  file under deploy/k8s is used by a kustomization.

    python tests/deploy/check_k8s.py KUSTOMIZE [--self-test]

--self-test renders broken copies of the overlays and fails unless each is
refused.
"""

import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33.0"
KUSTOMIZATIONS = ["base", "base/topics", "overlays/dev", "overlays/prod"]
# In no kustomization on purpose (see base/kustomization.yaml).
HPAS = ["base/hpa-oda-normalize.yaml", "base/hpa-oda-votes.yaml", "base/hpa-oda-history.yaml"]
UNLISTED = [*HPAS, "base/secret.yaml"]
CUSTOM = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "KafkaTopic"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass", "StorageClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
# Environment variables that carry a secret: only from a Secret, never as
# a value in the manifests (a database URL holds its password).
SECRET_ENV = re.compile(r"PASSWORD$|^DATABASE_URL$|^ODA_CDC_POSTGRES__URL$")


class Invalid(Exception):
    pass


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


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


def name_of(doc):
    return f"{doc.get('kind')}/{get(doc, 'metadata.name')}"


# --- rendering -------------------------------------------------------------

def render_text(kustomize, directory):
    result = subprocess.run([kustomize, "build", str(directory)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Invalid(f"kustomize build {directory.parent.name}/{directory.name}: {result.stderr.strip()}")
    return result.stdout


# --- one resource ----------------------------------------------------------

def check_core(doc, what):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise Invalid(f"{what}: {error.message} at {'/'.join(map(str, error.path))}") from error
    except kubernetes_validate.SchemaNotFoundError as error:
        raise Invalid(f"{what}: neither a core kind of Kubernetes {K8S_VERSION} nor a custom resource this check knows") from error


def check_scaled_object(doc, what):
    require(doc, ["metadata.name", "spec.scaleTargetRef.name", "spec.triggers"], what)
    for trigger in doc["spec"]["triggers"]:
        require(trigger, ["type", "metadata"], what)
        if trigger["type"] == "kafka":
            require(trigger, ["metadata.bootstrapServers", "metadata.consumerGroup", "metadata.lagThreshold"], what)
        if "authenticationRef" in trigger:
            require(trigger, ["authenticationRef.name"], what)
    low, high = doc["spec"].get("minReplicaCount", 0), doc["spec"].get("maxReplicaCount", 100)
    if high > 6:
        raise Invalid(f"{what}: more replicas than the 6 partitions of a topic")
    if low > high:
        raise Invalid(f"{what}: minReplicaCount {low} > maxReplicaCount {high}")


def check_trigger_authentication(doc, what):
    refs = get(doc, "spec.secretTargetRef")
    if not refs and not any(get(doc, f"spec.{k}") for k in ("env", "hashiCorpVault", "azureKeyVault", "podIdentity", "configMapTargetRef")):
        raise Invalid(f"{what}: no secretTargetRef nor other source of credentials")
    for ref in refs or []:
        require(ref, ["parameter", "name", "key"], what)


def check_service_monitor(doc, what):
    require(doc, ["metadata.name", "spec.selector", "spec.endpoints"], what)
    for endpoint in doc["spec"]["endpoints"]:
        require(endpoint, ["port", "path"], what)


def check_kafka_topic(doc, what):
    require(doc, ["metadata.name", "spec.partitions", "spec.replicas"], what)
    if not (doc["metadata"].get("labels") or {}).get("strimzi.io/cluster"):
        raise Invalid(f"{what}: no strimzi.io/cluster label (the Topic Operator ignores it)")
    spec = doc["spec"]
    for field in ("partitions", "replicas"):
        if not isinstance(spec[field], int) or isinstance(spec[field], bool) or spec[field] < 1:
            raise Invalid(f"{what}: spec.{field} must be a positive integer")
    config = spec.get("config") or {}
    if "cleanup.policy" not in config:
        raise Invalid(f"{what}: no cleanup.policy")
    if config.get("min.insync.replicas", 1) >= spec["replicas"] and spec["replicas"] > 1:
        raise Invalid(f"{what}: min.insync.replicas {config['min.insync.replicas']} leaves no broker to lose of {spec['replicas']} replicas")


def check_document(doc, what):
    require(doc, ["apiVersion", "kind", "metadata.name"], what)
    checks = {
        "ScaledObject": check_scaled_object,
        "TriggerAuthentication": check_trigger_authentication,
        "ServiceMonitor": check_service_monitor,
        "KafkaTopic": check_kafka_topic,
    }
    if doc["kind"] in checks:
        checks[doc["kind"]](doc, what)
    else:
        check_core(doc, what)
    if doc["kind"] == "ConfigMap":
        for key, value in (doc.get("data") or {}).items():
            if key.endswith(".toml"):
                try:
                    tomllib.loads(value)
                except tomllib.TOMLDecodeError as error:
                    raise Invalid(f"{what}: {key} is not TOML: {error}") from error


# --- references between the rendered resources ------------------------------

def selects(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def image_binaries():
    """The binaries the Dockerfile copies into the image."""
    return set(re.findall(r"target/release/([A-Za-z0-9_-]+)", (ROOT / "Dockerfile").read_text(encoding="utf-8")))


def secret_keys(docs):
    keys = {}
    for doc in docs:
        if doc.get("kind") == "Secret":
            ns = get(doc, "metadata.namespace")
            keys[(ns, doc["metadata"]["name"])] = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
    return keys


def check_pod_spec(pod, ns, what, by_key, secrets, binaries, problems):
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    account = pod.get("serviceAccountName")
    if account and account != "default" and ("ServiceAccount", ns, account) not in by_key:
        problems.append(f"{what}: ServiceAccount {account} is not rendered")
    for volume in volumes.values():
        if "configMap" in volume and ("ConfigMap", ns, volume["configMap"]["name"]) not in by_key:
            problems.append(f"{what}: volume {volume['name']}: ConfigMap {volume['configMap']['name']} is not rendered")
        if "secret" in volume and (ns, volume["secret"]["secretName"]) not in secrets:
            problems.append(f"{what}: volume {volume['name']}: unknown Secret {volume['secret']['secretName']}")
    for container in (pod.get("initContainers") or []) + pod["containers"]:
        where = f"{what} container {container['name']}"
        ports = {p.get("name") for p in container.get("ports") or []}
        image = container.get("image", "")
        if not re.search(r"(:[^/:]+|@sha256:[0-9a-f]{64})$", image) or image.endswith(":latest"):
            problems.append(f"{where}: image {image!r} has no fixed tag (does an `images` entry match it?)")
        command = (container.get("command") or [None])[0]
        if command and "oda-cdc" in image and command not in binaries:
            problems.append(f"{where}: runs {command}, which the image does not have ({', '.join(sorted(binaries))})")
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes:
                problems.append(f"{where}: mounts undefined volume {mount['name']}")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            port = get(container, f"{probe}.httpGet.port")
            if isinstance(port, str) and port not in ports:
                problems.append(f"{where}: {probe} uses port {port!r}, which the container does not name")
        for env in container.get("env") or []:
            if SECRET_ENV.search(env["name"]) and "value" in env:
                problems.append(f"{where}: env {env['name']} holds a secret as a literal value: take it from a Secret (valueFrom.secretKeyRef)")
            ref = get(env, "valueFrom.secretKeyRef")
            if ref and not ref.get("optional") and ref["key"] not in secrets.get((ns, ref["name"]), set()):
                problems.append(f"{where}: env {env['name']}: Secret {ref['name']} has no key {ref['key']} (see base/secret.yaml)")
            ref = get(env, "valueFrom.configMapKeyRef")
            if ref:
                config = by_key.get(("ConfigMap", ns, ref["name"]))
                if config is None or ref["key"] not in (config.get("data") or {}):
                    problems.append(f"{where}: env {env['name']}: no ConfigMap key {ref['name']}/{ref['key']}")


def check_references(docs, secrets, label):
    """What the API server, kubelet and operators would refuse or silently
    get wrong, though each resource is valid alone."""
    binaries = image_binaries()
    by_key = {(d["kind"], get(d, "metadata.namespace"), d["metadata"]["name"]): d for d in docs}
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    services = [d for d in docs if d["kind"] == "Service"]
    problems = []

    def pods_in(ns, selector):
        return [w for w in workloads if get(w, "metadata.namespace") == ns and selects(selector, get(w, "spec.template.metadata.labels"))]

    def container_ports(selected):
        return {p.get("name") for w in selected for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports") or []}

    for doc in docs:
        kind, ns, what = doc["kind"], get(doc, "metadata.namespace"), f"{label}: {name_of(doc)}"
        if kind not in CLUSTER_SCOPED and not ns:
            problems.append(f"{what}: no namespace (it would land in whatever namespace kubectl points at)")
        if kind in WORKLOADS:
            if not selects(get(doc, "spec.selector.matchLabels"), get(doc, "spec.template.metadata.labels")):
                problems.append(f"{what}: spec.selector does not match the pod template's labels")
            check_pod_spec(doc["spec"]["template"]["spec"], ns, what, by_key, secrets, binaries, problems)
            if kind == "Deployment" and get(doc, "metadata.name") == "oda-producer":
                # One writer and a warm standby (docs/operations.md#failover).
                if (get(doc, "spec.replicas") or 1) < 2:
                    problems.append(f"{what}: fewer than 2 replicas leaves no standby to take over")
                if get(doc, "spec.strategy.type") == "Recreate":
                    problems.append(f"{what}: Recreate stops the standby along with the writer")
            if kind == "StatefulSet":
                service = by_key.get(("Service", ns, get(doc, "spec.serviceName")))
                if service is None or get(service, "spec.clusterIP") != "None":
                    problems.append(f"{what}: serviceName {get(doc, 'spec.serviceName')} is not a headless Service here")
        elif kind == "Service":
            selected = pods_in(ns, get(doc, "spec.selector"))
            if not selected:
                problems.append(f"{what}: selects no pod")
            for port in get(doc, "spec.ports") or []:
                target = port.get("targetPort")
                if isinstance(target, str) and target not in container_ports(selected):
                    problems.append(f"{what}: targetPort {target!r} is no container port of the pods it selects")
        elif kind == "PodDisruptionBudget":
            selected = pods_in(ns, get(doc, "spec.selector.matchLabels"))
            if not selected:
                problems.append(f"{what}: selects no pod")
            for workload in selected:
                replicas = get(workload, "spec.replicas")
                replicas = 1 if replicas is None else replicas
                least = get(doc, "spec.minAvailable")
                most = get(doc, "spec.maxUnavailable")
                if (isinstance(least, int) and least >= replicas) or most == 0:
                    problems.append(f"{what}: lets no pod of {name_of(workload)} ({replicas} replicas) be evicted, so every node drain blocks")
        elif kind == "NetworkPolicy":
            selector = get(doc, "spec.podSelector.matchLabels")
            selected = pods_in(ns, selector) if selector else [w for w in workloads if get(w, "metadata.namespace") == ns]
            if not selected:
                problems.append(f"{what}: applies to no pod")
            for rule in get(doc, "spec.ingress") or []:
                for port in rule.get("ports") or []:
                    if isinstance(port.get("port"), str) and port["port"] not in container_ports(selected):
                        problems.append(f"{what}: ingress port {port['port']!r} is no container port of its pods")
        elif kind in ("ScaledObject", "HorizontalPodAutoscaler"):
            ref = doc["spec"]["scaleTargetRef"]
            if (ref.get("kind", "Deployment"), ns, ref["name"]) not in by_key:
                problems.append(f"{what}: scales {ref.get('kind', 'Deployment')}/{ref['name']}, which is not rendered")
            for trigger in get(doc, "spec.triggers") or []:
                auth = trigger.get("authenticationRef")
                if auth and (auth.get("kind", "TriggerAuthentication"), ns, auth["name"]) not in by_key:
                    problems.append(f"{what}: authenticationRef {auth['name']} is not rendered")
        elif kind == "TriggerAuthentication":
            for ref in get(doc, "spec.secretTargetRef") or []:
                if ref["key"] not in secrets.get((ns, ref["name"]), set()):
                    problems.append(f"{what}: Secret {ref['name']} has no key {ref['key']} (see base/secret.yaml)")
        elif kind == "ServiceMonitor":
            selected = [s for s in services if get(s, "metadata.namespace") == ns and selects(get(doc, "spec.selector.matchLabels"), get(s, "metadata.labels"))]
            if not selected:
                problems.append(f"{what}: selects no Service")
            for endpoint in doc["spec"]["endpoints"]:
                for service in selected:
                    if endpoint["port"] not in {p.get("name") for p in service["spec"].get("ports") or []}:
                        problems.append(f"{what}: Service {service['metadata']['name']} has no port named {endpoint['port']!r}")
    if problems:
        raise Invalid("\n  ".join(problems))


def check_rendered(docs, label, secrets):
    for doc in docs:
        check_document(doc, f"{label}: {name_of(doc)}")
    check_references(docs, secrets, label)


# --- kustomizations --------------------------------------------------------

def kustomization_file(directory):
    return directory / "kustomization.yaml"


def check_overrides_matter(kustomize, tree, rel, rendered):
    """Every patch and every `images` entry of tree/rel changes its output."""
    path = kustomization_file(tree / rel)
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8"))
    variants = []
    for i, patch in enumerate(kustomization.get("patches") or []):
        changed = copy.deepcopy(kustomization)
        del changed["patches"][i]
        described = patch.get("path") or json.dumps(patch.get("target"), sort_keys=True)
        variants.append((f"patch {described}", changed, "its target matches no resource"))
    for i, image in enumerate(kustomization.get("images") or []):
        changed = copy.deepcopy(kustomization)
        changed["images"][i]["newTag"] = "probe-of-the-check"
        variants.append((f"images entry {image['name']}", changed, "its name matches no container image"))
    for what, changed, why in variants:
        with tempfile.TemporaryDirectory() as scratch:
            copy_root = pathlib.Path(scratch) / "k8s"
            shutil.copytree(tree, copy_root)
            kustomization_file(copy_root / rel).write_text(yaml.safe_dump(changed), encoding="utf-8")
            if render_text(kustomize, copy_root / rel) == rendered:
                raise Invalid(f"{rel}: {what} changes nothing: {why}")
    return len(variants)


def check_coverage(tree):
    used = {tree / u for u in UNLISTED}
    for rel in KUSTOMIZATIONS:
        directory = tree / rel
        kustomization = yaml.safe_load(kustomization_file(directory).read_text(encoding="utf-8"))
        used.add(kustomization_file(directory))
        used.update(directory / r for r in kustomization.get("resources") or [])
        used.update(directory / p["path"] for p in kustomization.get("patches") or [] if "path" in p)
    used = {u.resolve() for u in used}
    unused = [p for p in sorted(tree.rglob("*.y*ml")) if p.resolve() not in used]
    if unused:
        raise Invalid(f"used by no kustomization: {', '.join(str(p.relative_to(tree)) for p in unused)}")


def slug(name):
    return name.lower().replace("æ", "ae").replace("ø", "oe").replace("å", "aa")


PREFIX = "parliament"
# Processors with several inputs and state partitioned over Kafka, by
# binary. As the code names their topics (core/src/topics.rs
# named_processed_topic; VoteTopics in consumers/src/processors/votes/mod.rs;
# changelog_topic in consumers/src/processors/history.rs): `oda-<name>`
# writes `<prefix>-<name>-processed` and keeps its state in
# `<prefix>-<name>-<kind>` for each kind of state topic it has:
# - `output`: the topic class of its output: `processed` (compacted, one
#   document per key: the `processed` patch of base/topics) or `kept` (one
#   key carries many records, so never compacted, and kept for good:
#   cleanup.policy=delete, retention.ms=-1, as TopicSpec::kept makes it);
# - `repartition` (inputs re-keyed; cleanup.policy=delete, 7 days: one key
#   carries many records), whose partitions the changelog's must match: a
#   partition's state lives in the changelog partition of the same number;
# - `changelog` (compacted) alone: the state of input partition p lives in
#   changelog partition p, so the changelog needs at least as many
#   partitions as every input topic (`inputs`: the source file whose
#   DEFAULT_ENTITIES it follows unless `entities` is configured).
STATEFUL_PROCESSORS = {
    "oda-votes": {"output": "processed", "state": ("repartition", "changelog")},
    "oda-history": {
        "output": "kept",
        "state": ("changelog",),
        "inputs": ROOT / "consumers" / "src" / "processors" / "history.rs",
    },
}
REPARTITION_RETENTION_MS = 7 * 24 * 60 * 60 * 1000


def stateful_topics(binary):
    name = binary.removeprefix("oda-")
    kinds = ("processed", *STATEFUL_PROCESSORS[binary]["state"])
    return {kind: f"{PREFIX}-{name}-{kind}" for kind in kinds}


def default_entities(source):
    """A processor's DEFAULT_ENTITIES, read from its source: the sets it
    follows when `entities` is not configured."""
    text = source.read_text(encoding="utf-8")
    found = re.search(r"DEFAULT_ENTITIES\s*:\s*&\[&str\]\s*=\s*&\[([^\]]*)\]", text)
    if not found:
        raise Invalid(f"{source.relative_to(ROOT)}: no DEFAULT_ENTITIES to derive the inputs from")
    names = re.findall(r'"([^"]+)"', found.group(1))
    if not names:
        raise Invalid(f"{source.relative_to(ROOT)}: DEFAULT_ENTITIES names no entity set")
    return names


def configured_entities(docs, binary):
    """`entities` as `binary` reads it in a rendering: its container's
    ODA_CDC_ENTITIES, else `entities` of the oda-cdc.toml it mounts; None
    when neither is set (or the rendering has no such workload)."""
    workload = next((d for d in docs if d["kind"] in WORKLOADS and d["metadata"]["name"] == binary), None)
    if workload is None:
        return None
    pod = workload["spec"]["template"]["spec"]
    container = next((c for c in pod["containers"] if c["name"] == binary), pod["containers"][0])
    for env in container.get("env") or []:
        if env["name"] == "ODA_CDC_ENTITIES" and "value" in env:
            # A list key from the environment: comma-separated (core/src/config/layers.rs).
            return [e.strip() for e in env["value"].split(",") if e.strip()]
    for volume in pod.get("volumes") or []:
        name = get(volume, "configMap.name")
        config = next((d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name), None)
        data = get(config, "data") or {}
        if "oda-cdc.toml" in data:
            entities = tomllib.loads(data["oda-cdc.toml"]).get("entities")
            if entities is not None:
                return list(entities)
    return None


def input_topics(binary, docs, model_entities):
    """The entity topics `binary` reads, as its `inputs` derives them: the
    configured `entities` (matched case-insensitively, as the code does),
    else its defaults."""
    chosen = configured_entities(docs, binary)
    if chosen is None:
        chosen = default_entities(STATEFUL_PROCESSORS[binary]["inputs"])
    by_lower = {e.lower(): e for e in model_entities}
    topics = {}
    for name in chosen:
        entity = by_lower.get(name.lower())
        if entity is None:
            raise Invalid(f"{binary} follows {name!r}, which is no captured entity set of the model")
        topics[f"{PREFIX}-{slug(entity)}"] = entity
    return topics


def check_topics(docs):
    model = json.loads((ROOT / "model" / "oda-metadata.json").read_text(encoding="utf-8"))
    views = {"Aktstykke", "Almdel", "Debat", "EUsag", "Forslag", "Sambehandlinger"}
    model_entities = [s["entity"] for s in model if s["entity"] not in views]
    entities = {f"{PREFIX}-{slug(e)}" for e in model_entities}
    topics = {d["metadata"]["name"]: d for d in docs if d["kind"] == "KafkaTopic"}
    classes = {n: (d["metadata"].get("labels") or {}).get("oda-cdc/topic-class") for n, d in topics.items()}
    entity_topics = {n for n, c in classes.items() if c == "entity"}
    if entity_topics != entities:
        raise Invalid(f"entity KafkaTopics differ from the model: missing {sorted(entities - entity_topics)}, extra {sorted(entity_topics - entities)}")
    binaries = image_binaries()
    stateful = {}
    for binary in STATEFUL_PROCESSORS:
        if binary not in binaries:
            raise Invalid(f"{binary}: the image has no such binary ({', '.join(sorted(binaries))})")
        stateful[binary] = stateful_topics(binary)
    outputs = {cls: {stateful[b]["processed"] for b, p in STATEFUL_PROCESSORS.items() if p["output"] == cls} for cls in ("processed", "kept")}
    processed = {n for n, c in classes.items() if c == "processed"}
    wanted = {f"{t}-processed" for t in entities} | outputs["processed"]
    if processed != wanted:
        raise Invalid(f"processed KafkaTopics are not one per entity topic and one per stateful processor with a compacted output: missing {sorted(wanted - processed)}, extra {sorted(processed - wanted)}")
    kept = {n for n, c in classes.items() if c == "kept"}
    if kept != outputs["kept"]:
        raise Invalid(f"kept KafkaTopics are not the outputs of the processors that keep them: missing {sorted(outputs['kept'] - kept)}, extra {sorted(kept - outputs['kept'])}")
    internal = {f"{PREFIX}-{t}" for t in ("dlq", "cdc-checkpoints", "cdc-state", "cdc-signals", "replay-log")}
    for needed in sorted(internal):
        if needed not in topics:
            raise Invalid(f"no KafkaTopic {needed}")
    for name in entity_topics | processed:
        if topics[name]["spec"]["config"]["cleanup.policy"] != "compact":
            raise Invalid(f"KafkaTopic {name}: an entity or processed topic that is not compacted")
    for name in kept:
        config = topics[name]["spec"].get("config") or {}
        if config.get("cleanup.policy") != "delete":
            raise Invalid(f"KafkaTopic {name}: cleanup.policy {config.get('cleanup.policy')}, but one key carries a record's whole history (cleanup.policy=delete)")
        if str(config.get("retention.ms")) != "-1":
            raise Invalid(f"KafkaTopic {name}: retention.ms {config.get('retention.ms')}: a history nothing can rebuild must be kept for good (-1)")
        if str(config.get("retention.bytes", -1)) != "-1":
            raise Invalid(f"KafkaTopic {name}: retention.bytes {config['retention.bytes']} would delete history once the topic is that large")
    for binary, named in stateful.items():
        state = STATEFUL_PROCESSORS[binary]["state"]
        for kind in state:
            if named[kind] not in topics:
                raise Invalid(f"no KafkaTopic {named[kind]} ({binary}'s {kind} topic)")
        changelog = topics[named["changelog"]]["spec"]
        if (changelog.get("config") or {}).get("cleanup.policy") != "compact":
            raise Invalid(f"KafkaTopic {named['changelog']}: a changelog that is not compacted")
        if "repartition" in state:
            repartition = topics[named["repartition"]]["spec"]
            config = repartition.get("config") or {}
            if "compact" in str(config.get("cleanup.policy")):
                raise Invalid(f"KafkaTopic {named['repartition']}: compacted, but one key carries many records (cleanup.policy=delete)")
            if str(config.get("retention.ms")) != str(REPARTITION_RETENTION_MS):
                raise Invalid(f"KafkaTopic {named['repartition']}: retention.ms {config.get('retention.ms')}, not 7 days")
            if repartition["partitions"] != changelog["partitions"]:
                raise Invalid(f"KafkaTopics {named['repartition']} ({repartition['partitions']} partitions) and {named['changelog']} ({changelog['partitions']}): {binary} needs as many partitions on both")
        if "inputs" in STATEFUL_PROCESSORS[binary]:
            for topic, entity in sorted(input_topics(binary, docs, model_entities).items()):
                if topic not in topics:
                    raise Invalid(f"{binary} reads {topic} ({entity}), which has no KafkaTopic")
                if topics[topic]["spec"]["partitions"] > changelog["partitions"]:
                    raise Invalid(f"KafkaTopics {topic} ({topics[topic]['spec']['partitions']} partitions) and {named['changelog']} ({changelog['partitions']}): {binary} needs a changelog partition for each partition of its inputs")
    expected = entities | processed | kept | internal | {t for named in stateful.values() for t in named.values()}
    unexpected = sorted(set(topics) - expected)
    if unexpected:
        raise Invalid(f"KafkaTopics no oda-cdc component uses: {', '.join(unexpected)}")
    return len(topics)


def check_tree(kustomize, tree, only=None):
    """Renders and checks the kustomizations of a deploy/k8s tree."""
    unlisted = {u: documents((tree / u).read_text(encoding="utf-8")) for u in UNLISTED}
    secrets = secret_keys(unlisted["base/secret.yaml"])
    rendered, counts = {}, {}
    for rel in only or KUSTOMIZATIONS:
        text = render_text(kustomize, tree / rel)
        docs = documents(text)
        check_rendered(docs, rel, secrets)
        overrides = check_overrides_matter(kustomize, tree, rel, text)
        rendered[rel] = docs
        counts[rel] = (len(docs), overrides)
    if only is None:
        for rel, docs in unlisted.items():
            for doc in docs:
                check_document(doc, f"{rel}: {name_of(doc)}")
        # The HPAs replace the base's ScaledObjects: check them in their place.
        base = [d for d in rendered["base"] if d["kind"] != "ScaledObject"]
        hpas = [d for rel in HPAS for d in unlisted[rel]]
        check_references(base + hpas, secrets, "base + " + " + ".join(pathlib.Path(h).name for h in HPAS))
        check_coverage(tree)
    if "base/topics" in rendered:
        counts["topics"] = check_topics(rendered["base/topics"])
    # The prod overlay renders the topics with the workloads and their
    # config, which may choose the inputs (`entities`) of a processor.
    if "overlays/prod" in rendered:
        check_topics(rendered["overlays/prod"])
    return counts


def main(kustomize):
    counts = check_tree(kustomize, K8S)
    topics = counts.pop("topics")
    summary = ", ".join(f"{rel} {n} resources/{o} overrides" for rel, (n, o) in counts.items())
    print(f"ok: rendered and valid (Kubernetes {K8S_VERSION}): {summary}; {len(UNLISTED)} unlisted files; {topics} KafkaTopics match contract.md#topics")


# --- self-test -------------------------------------------------------------

def edit_yaml(path, change):
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    change(docs)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def add_patch(kustomization, kind, name, ops):
    kustomization.setdefault("patches", []).append({"target": {"kind": kind, "name": name}, "patch": yaml.safe_dump(ops)})


def self_test(kustomize):
    def dev(change):
        return "overlays/dev", lambda tree: edit_yaml(kustomization_file(tree / "overlays/dev"), lambda d: change(d[0]))

    def prod(change):
        return "overlays/prod", lambda tree: edit_yaml(kustomization_file(tree / "overlays/prod"), lambda d: change(d[0]))

    def topics(change):
        return "base/topics", lambda tree: edit_yaml(kustomization_file(tree / "base/topics"), lambda d: change(d[0]))

    def votes_topics(change):
        path = "base/topics/votes-topics.yaml"
        return "base/topics", lambda tree: edit_yaml(tree / path, lambda docs: change({d["metadata"]["name"]: d for d in docs}))

    def history_topics(change):
        path = "base/topics/history-topics.yaml"
        return "base/topics", lambda tree: edit_yaml(tree / path, lambda docs: change({d["metadata"]["name"]: d for d in docs}))

    def history_follows(entities, *patches):
        """The prod overlay with `entities` in its config, and patches."""
        def breaks(tree):
            def prepend(docs):
                docs[0]["data"]["oda-cdc.toml"] = f"entities = {json.dumps(entities)}\n" + docs[0]["data"]["oda-cdc.toml"]
            edit_yaml(tree / "overlays/prod/config.yaml", prepend)
            edit_yaml(kustomization_file(tree / "overlays/prod"), lambda d: [add_patch(d[0], *p) for p in patches])
        return "overlays/prod", breaks

    def rename_patched_deployment(tree):
        edit_yaml(tree / "overlays/dev/resources.yaml", lambda d: d[0]["metadata"].update(name="oda-producr"))

    def drop_topic_replicas(k):
        patch = yaml.safe_load(k["patches"][0]["patch"])
        del patch[0]["value"]["replicas"]
        k["patches"][0]["patch"] = yaml.safe_dump(patch)

    cases = {
        "a strategic-merge patch for a Deployment the base lacks": ("overlays/dev", rename_patched_deployment),
        "a JSON patch whose target matches nothing": dev(lambda k: k["patches"][1]["target"].update(name="oda-normalise")),
        "an images entry that matches no container": dev(lambda k: k["images"][0].update(name="oda-cdc-x")),
        "a rendered Deployment without containers": dev(lambda k: add_patch(
            k, "Deployment", "oda-producer", [{"op": "remove", "path": "/spec/template/spec/containers"}])),
        "a rendered Deployment with a misspelt field": dev(lambda k: add_patch(
            k, "Deployment", "oda-producer", [{"op": "add", "path": "/spec/template/spec/containers/0/imagePullPolcy", "value": "Always"}])),
        "replicas as text": dev(lambda k: add_patch(
            k, "StatefulSet", "oda-normalize", [{"op": "replace", "path": "/spec/replicas", "value": "one"}])),
        "a Service that selects no pod": dev(lambda k: add_patch(
            k, "Service", "oda-producer", [{"op": "replace", "path": "/spec/selector", "value": {"app.kubernetes.io/name": "oda-producr"}}])),
        "a probe on an unnamed port": dev(lambda k: add_patch(
            k, "Deployment", "oda-producer", [{"op": "replace", "path": "/spec/template/spec/containers/0/livenessProbe/httpGet/port", "value": "admin"}])),
        "a command the image does not have": dev(lambda k: add_patch(
            k, "StatefulSet", "oda-normalize", [{"op": "replace", "path": "/spec/template/spec/containers/0/command/0", "value": "oda-normalise"}])),
        "a ScaledObject without triggers": dev(lambda k: add_patch(
            k, "ScaledObject", "oda-normalize", [{"op": "replace", "path": "/spec/triggers", "value": []}])),
        "a ServiceMonitor endpoint without path": dev(lambda k: add_patch(
            k, "ServiceMonitor", "oda-cdc", [{"op": "remove", "path": "/spec/endpoints/0/path"}])),
        "a ServiceMonitor on a port no Service has": dev(lambda k: add_patch(
            k, "ServiceMonitor", "oda-cdc", [{"op": "replace", "path": "/spec/endpoints/0/port", "value": "http"}])),
        "a ScaledObject whose TriggerAuthentication is gone": prod(lambda k: k["resources"].remove("triggerauthentication.yaml")),
        "a credential key the Secret does not have": prod(lambda k: add_patch(
            k, "Deployment", "oda-producer", [{"op": "replace", "path": "/spec/template/spec/containers/0/env/0/valueFrom/secretKeyRef/key", "value": "kafka-user"}])),
        "a prod config that is not TOML": prod(lambda k: add_patch(
            k, "ConfigMap", "oda-cdc-config", [{"op": "replace", "path": "/data/oda-cdc.toml", "value": "format = avro\n"}])),
        "a database URL written into the manifest": dev(lambda k: add_patch(
            k, "StatefulSet", "oda-pg-sink", [{"op": "replace", "path": "/spec/template/spec/containers/0/env/3",
                                               "value": {"name": "DATABASE_URL", "value": "postgres://oda:secret@db:5432/oda"}}])),
        "the sink's database URL from a Secret key secret.yaml lacks": dev(lambda k: add_patch(
            k, "StatefulSet", "oda-pg-sink", [{"op": "replace", "path": "/spec/template/spec/containers/0/env/3/valueFrom/secretKeyRef/key", "value": "url"}])),
        "a producer without a standby": dev(lambda k: add_patch(
            k, "Deployment", "oda-producer", [{"op": "replace", "path": "/spec/replicas", "value": 1}])),
        "a producer PDB that blocks every drain": dev(lambda k: add_patch(
            k, "PodDisruptionBudget", "oda-producer", [{"op": "remove", "path": "/spec/maxUnavailable"},
                                                      {"op": "add", "path": "/spec/minAvailable", "value": 2}])),
        "a topic policy without replicas": topics(drop_topic_replicas),
        "topics without their Strimzi cluster": topics(lambda k: k.pop("labels")),
        "a compacted repartition topic": votes_topics(
            lambda t: t["parliament-votes-repartition"]["spec"]["config"].update({"cleanup.policy": "compact"})),
        "a changelog with more partitions than its repartition topic": votes_topics(
            lambda t: t["parliament-votes-changelog"]["spec"].update(partitions=12)),
        "a state topic named unlike the code names it": votes_topics(
            lambda t: t["parliament-votes-changelog"]["metadata"].update(name="parliament-votes-state")),
        "a compacted history": history_topics(
            lambda t: t["parliament-history-processed"]["spec"]["config"].update({"cleanup.policy": "compact"})),
        "a history kept 7 days": history_topics(
            lambda t: t["parliament-history-processed"]["spec"]["config"].update({"retention.ms": 604800000})),
        "a history changelog with fewer partitions than the entity topics": history_topics(
            lambda t: t["parliament-history-changelog"]["spec"].update(partitions=3)),
        "a history changelog that is not compacted": history_topics(
            lambda t: t["parliament-history-changelog"]["spec"]["config"].update({"cleanup.policy": "delete"})),
        "oda-history following an entity set the model lacks": prod(lambda k: add_patch(
            k, "StatefulSet", "oda-history", [{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
                                               "value": {"name": "ODA_CDC_ENTITIES", "value": "Sag, Lovforslag"}}])),
        "oda-history following (by config) a topic with more partitions than its changelog": history_follows(
            ["Sag", "Stemme"], ("KafkaTopic", "parliament-stemme", [{"op": "replace", "path": "/spec/partitions", "value": 12}])),
    }
    for what, (rel, breaks) in cases.items():
        with tempfile.TemporaryDirectory() as scratch:
            tree = pathlib.Path(scratch) / "k8s"
            shutil.copytree(K8S, tree)
            breaks(tree)
            try:
                check_tree(kustomize, tree, only=[rel])
            except Invalid:
                continue
        sys.exit(f"check_k8s: accepted a broken input: {what}")
    # A file no kustomization uses.
    with tempfile.TemporaryDirectory() as scratch:
        tree = pathlib.Path(scratch) / "k8s"
        shutil.copytree(K8S, tree)
        shutil.copy(tree / "base/pdb.yaml", tree / "base/pdb-extra.yaml")
        try:
            check_coverage(tree)
            sys.exit("check_k8s: accepted a broken input: a manifest no kustomization uses")
        except Invalid:
            pass
    print(f"ok: {len(cases) + 1} broken kustomizations refused")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        sys.exit("usage: check_k8s.py KUSTOMIZE [--self-test]")
    try:
        if "--self-test" in sys.argv:
            self_test(args[0])
        else:
            main(args[0])
    except Invalid as error:
        sys.exit(f"check_k8s: {error}")
