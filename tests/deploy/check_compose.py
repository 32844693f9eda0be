"""Offline check of docker-compose.yml, no Docker engine needed:

- the file, its variables interpolated as `docker compose` does with an
  empty environment (so every `${VAR:-default}` takes its default),
  validates against the Compose specification's JSON schema, the
  compose-spec.json that compose-go (the specification's reference library,
  used by `docker compose`) embeds;
- then the consistency checks compose-go makes after the schema (a port of
  the part of its checkConsistency that applies here): every service has an
  image or a build, depends_on names services (one left out by a profile
  only with `required: false`), named volumes, networks, configs and
  secrets are declared, healthcheck tests start with CMD, CMD-SHELL or
  NONE, durations parse, restart policies are ones the engine knows;
- and what compose would not notice until `up`: bind-mounted files and the
  build context exist in the repository, and the services built from the
  Dockerfile run binaries (entrypoints, health checks) their target stage
  holds, and a build target is a stage of the Dockerfile;
- and what would only show in Prometheus: every oda-cdc service with an
  admin port (METRICS_ADDR) has ADMIN_PORT and its health check on that
  port, and a scrape job of the prometheus.yml the prometheus service
  mounts targets `<service>:<port>`.

    python tests/deploy/check_compose.py SCHEMA [--self-test]
"""

import copy
import json
import pathlib
import re
import sys

import jsonschema
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import check_docker  # noqa: E402  (beside this file: the Dockerfile's stages)

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


class Invalid(Exception):
    pass


# --- interpolation (compose-go's template package, the subset of its syntax
# that has a meaning with an empty environment) -----------------------------

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _braced_end(text, start):
    """Index of the `}` closing the `${` whose body starts at `start`."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise Invalid(f"unterminated ${{ in {text!r}")


def interpolate(text, env, where):
    out = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            end = _braced_end(text, i + 2)
            body = text[i + 2:end]
            out.append(_substitute(body, env, where))
            i = end + 1
            continue
        match = NAME.match(text, i + 1)
        if not match:
            raise Invalid(f"{where}: invalid interpolation format for {text!r}")
        out.append(env.get(match.group(0), ""))
        i = match.end()
    return "".join(out)


def _substitute(body, env, where):
    match = NAME.match(body)
    if not match:
        raise Invalid(f"{where}: invalid interpolation format for ${{{body}}}")
    name, rest = match.group(0), body[match.end():]
    value = env.get(name)
    if rest == "":
        return value or ""
    for op in (":-", "-", ":?", "?", ":+", "+"):
        if rest.startswith(op):
            arg = interpolate(rest[len(op):], env, where)
            unset = value is None or (op.startswith(":") and value == "")
            if op in (":-", "-"):
                return arg if unset else value
            if op in (":?", "?"):
                if unset:
                    raise Invalid(f"{where}: required variable {name} is missing a value: {arg}")
                return value
            return "" if unset else arg
    raise Invalid(f"{where}: invalid interpolation format for ${{{body}}}")


def interpolate_tree(node, env, where=""):
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        return interpolate(node, env, where)
    return node


# --- schema ------------------------------------------------------------------

def validator(schema_path):
    schema = json.loads(pathlib.Path(schema_path).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    formats = jsonschema.FormatChecker()
    formats.checks("duration", raises=Invalid)(lambda v: not isinstance(v, str) or parse_duration(v) is not None)
    return cls(schema, format_checker=formats)


def check_schema(model, schema):
    errors = sorted(schema.iter_errors(model), key=lambda e: list(map(str, e.absolute_path)))
    # A property that fails its own subschema also makes its parent's
    # `unevaluatedProperties` fail; report the property, not the echo.
    specific = [e for e in errors if e.validator != "unevaluatedProperties"]
    errors = specific or errors
    if errors:
        # Like compose-go: report the most specific error of each.
        def deepest(error):
            if error.context:
                return max((deepest(e) for e in error.context), key=lambda e: len(e.absolute_path))
            return error
        lines = []
        for error in errors[:5]:
            error = deepest(error)
            lines.append(f"{'.'.join(map(str, error.absolute_path)) or '(top level)'}: {error.message}")
        raise Invalid("not a valid Compose file:\n  " + "\n  ".join(lines))


# --- consistency (compose-go's loader/validate.go, in part) -------------------

# str2duration, which compose-go parses durations with: Go's units plus d and w.
DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h|d|w))+")


def parse_duration(text):
    return text if text == "0" or DURATION.fullmatch(text) else None


def _named(section):
    return set((section or {}).keys())


def _volume_source(volume):
    """(type, source) of a service volume in short or long syntax."""
    if isinstance(volume, dict):
        return volume.get("type", "volume"), volume.get("source")
    parts = volume.split(":")
    if len(parts) == 1:
        return "volume", None  # anonymous
    source = parts[0]
    if source.startswith((".", "/", "~")):
        return "bind", source
    return "volume", source


def image_binaries(project_dir, build):
    """The binaries of the image a service builds: the target stage's, or
    the last stage's (Docker's default target)."""
    dockerfile = (project_dir / "Dockerfile").read_text(encoding="utf-8")
    held = check_docker.stage_binaries(dockerfile)
    target = build.get("target") if isinstance(build, dict) else None
    if target is None:
        target = check_docker.stages(dockerfile)[-1][0]
    return held.get(target)


def check_consistency(model, project_dir):
    services = model.get("services") or {}
    declared = {kind: _named(model.get(kind)) for kind in ("volumes", "networks", "configs", "secrets")}
    problems = []
    for name, service in services.items():
        where = f"services.{name}"
        if not service.get("image") and not service.get("build") and not service.get("provider"):
            problems.append(f"{where}: neither an image nor a build")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {} for d in depends}
        for dep, cfg in depends.items():
            if dep not in services:
                problems.append(f"{where}: depends on undefined service {dep!r}")
            elif services[dep].get("profiles") and not service.get("profiles") and (cfg or {}).get("required", True):
                # `docker compose up` without that profile refuses to start.
                problems.append(f"{where}: depends on {dep!r}, which only profile(s) {services[dep]['profiles']} start, without `required: false`")
        networks = service.get("networks") or {}
        if service.get("network_mode") and networks:
            problems.append(f"{where}: network_mode and networks are mutually exclusive")
        for network in networks:
            if network not in declared["networks"] and network != "default":
                problems.append(f"{where}: refers to undefined network {network!r}")
        for i, volume in enumerate(service.get("volumes") or []):
            kind, source = _volume_source(volume)
            if kind == "volume" and source and source not in declared["volumes"]:
                problems.append(f"{where}.volumes[{i}]: undefined volume {source!r}")
            if kind == "bind" and source and not source.startswith(("/", "~")):
                if not (project_dir / source).exists():
                    problems.append(f"{where}.volumes[{i}]: bind source {source} does not exist (compose would create an empty directory)")
        for kind in ("configs", "secrets"):
            for ref in service.get(kind) or []:
                source = ref.get("source") if isinstance(ref, dict) else ref
                if source not in declared[kind]:
                    problems.append(f"{where}: refers to undefined {kind[:-1]} {source!r}")
        restart = service.get("restart")
        if restart is not None and not re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", str(restart)):
            # The schema takes any string; the engine refuses the container.
            problems.append(f"{where}.restart: {restart!r} is no restart policy")
        healthcheck = service.get("healthcheck") or {}
        test = healthcheck.get("test")
        if isinstance(test, list) and test and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            problems.append(f"{where}.healthcheck.test must start with CMD, CMD-SHELL or NONE")
        durations = {f"healthcheck.{k}": healthcheck.get(k) for k in ("interval", "timeout", "start_period", "start_interval")}
        durations["stop_grace_period"] = service.get("stop_grace_period")
        for field, value in durations.items():
            if value is not None and parse_duration(str(value)) is None:
                problems.append(f"{where}.{field}: {value!r} is not a duration")
        build = service.get("build")
        entrypoint = service.get("entrypoint")
        binaries = image_binaries(project_dir, build) if build else None
        if build and binaries is None:
            problems.append(f"{where}.build.target: {build.get('target')!r} is no stage of the Dockerfile")
            binaries = set()
        if build and isinstance(entrypoint, list) and entrypoint and entrypoint[0] not in binaries:
            problems.append(f"{where}.entrypoint: {entrypoint[0]} is not a binary the Dockerfile puts in the image")
        if build and isinstance(test, list) and test[:1] == ["CMD"] and len(test) > 1 and test[1] not in binaries:
            problems.append(f"{where}.healthcheck: {test[1]} is not in the image")
        if build:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not (project_dir / context / dockerfile).is_file():
                problems.append(f"{where}.build: no {dockerfile} in context {context!r}")
    if problems:
        raise Invalid("inconsistent Compose file:\n  " + "\n  ".join(problems))


def _port(addr):
    match = re.fullmatch(r".*:(\d+)", str(addr))
    return match.group(1) if match else None


def scrape_targets(model, project_dir):
    """The targets of the prometheus.yml the prometheus service mounts; None
    without such a service or mount."""
    service = (model.get("services") or {}).get("prometheus") or {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str) and volume.split(":")[1:2] == ["/etc/prometheus/prometheus.yml"]:
            config = yaml.safe_load((project_dir / volume.split(":")[0]).read_text(encoding="utf-8")) or {}
            return {
                target
                for job in config.get("scrape_configs") or []
                for static in job.get("static_configs") or []
                for target in static.get("targets") or []
            }
    return None


def check_admin_ports(model, project_dir):
    """Each oda-cdc service's admin port: its health check and Prometheus
    look at the port it serves."""
    targets = scrape_targets(model, project_dir)
    problems = []
    for name, service in (model.get("services") or {}).items():
        env = service.get("environment") or {}
        if not service.get("build") or not isinstance(env, dict) or "METRICS_ADDR" not in env:
            continue
        where = f"services.{name}"
        port = _port(env["METRICS_ADDR"])
        if port is None:
            problems.append(f"{where}: METRICS_ADDR {env['METRICS_ADDR']!r} names no port")
            continue
        if str(env.get("ADMIN_PORT", port)) != port:
            problems.append(f"{where}: ADMIN_PORT {env['ADMIN_PORT']} is not the admin port {port} (METRICS_ADDR)")
        test = (service.get("healthcheck") or {}).get("test")
        urls = [w for w in test if str(w).startswith("http")] if isinstance(test, list) else []
        for url in urls:
            if not re.match(rf"https?://[^/]+:{port}/", url):
                problems.append(f"{where}.healthcheck: {url} is not on the admin port {port}")
        if targets is not None and f"{name}:{port}" not in targets:
            problems.append(f"{where}: no scrape job of prometheus.yml targets {name}:{port}")
    if problems:
        raise Invalid("admin ports:\n  " + "\n  ".join(problems))


def check(text, schema, project_dir=ROOT):
    raw = yaml.safe_load(text)  # resolves anchors and `<<` merge keys, as compose-go does
    if not isinstance(raw, dict):
        raise Invalid("the top level is not a mapping")
    model = interpolate_tree(raw, {})
    check_schema(model, schema)
    check_consistency(model, project_dir)
    check_admin_ports(model, project_dir)
    return model


def main(schema_path):
    schema = validator(schema_path)
    model = check(COMPOSE.read_text(encoding="utf-8"), schema)
    print(f"ok: docker-compose.yml valid against the Compose schema, {len(model['services'])} services consistent")


def self_test(schema_path):
    schema = validator(schema_path)
    text = COMPOSE.read_text(encoding="utf-8")
    base = yaml.safe_load(text)

    def mutated(change):
        model = copy.deepcopy(base)
        change(model)
        return yaml.safe_dump(model, sort_keys=False)

    services = lambda m: m["services"]  # noqa: E731
    cases = {
        "an unknown service key": mutated(lambda m: services(m)["kafka"].update(restart_policy="always")),
        "an unknown top-level key": mutated(lambda m: m.update(service={})),
        "ports as a mapping": mutated(lambda m: services(m)["kafka"].update(ports={"29092": 29092})),
        "profiles as text, not a list": mutated(lambda m: services(m)["oda-sim"].update(profiles="offline")),
        "a healthcheck as a list": mutated(lambda m: services(m)["kafka"].update(healthcheck=["CMD", "true"])),
        "an unknown depends_on condition": mutated(
            lambda m: services(m)["registry"]["depends_on"]["kafka"].update(condition="service_ready")),
        "a dependency on an undefined service": mutated(
            lambda m: services(m)["registry"]["depends_on"].update(zookeeper={"condition": "service_started"})),
        "a required dependency on a profile's service": mutated(
            lambda m: services(m)["oda-producer"]["depends_on"]["oda-sim"].pop("required")),
        "an undeclared named volume": mutated(lambda m: m["volumes"].pop("kafka-data")),
        "a bind mount of a missing file": mutated(
            lambda m: services(m)["prometheus"]["volumes"].__setitem__(0, "./deploy/prometheus/missing.yml:/etc/prometheus/prometheus.yml:ro")),
        "a stop_grace_period that is no duration": mutated(lambda m: services(m)["oda-producer"].update(stop_grace_period="fifteen")),
        "an entrypoint the image does not have": mutated(lambda m: services(m)["oda-normalize"].update(entrypoint=["oda-normalise"])),
        "the simulator from the production image": mutated(lambda m: services(m)["oda-sim"].update(build=".")),
        "a build target that is no stage": mutated(lambda m: services(m)["oda-sim"]["build"].update(target="simulator")),
        "a health check with curl, which the image lacks": mutated(lambda m: services(m)["oda-producer"]["healthcheck"].update(test=["CMD", "curl", "-f", "http://127.0.0.1:9464/healthz"])),
        "a misspelt restart policy": mutated(lambda m: services(m)["kafka"].update(restart="unless-stoped")),
        "a healthcheck test without CMD": mutated(lambda m: services(m)["registry"]["healthcheck"].update(test=["curl", "-f", "x"])),
        "a required variable without value": text.replace("${RUST_LOG:-info}", "${RUST_LOG:?set RUST_LOG}", 1),
        "a bad interpolation": text.replace("${LOG_FORMAT:-text}", "${LOG FORMAT}", 1),
        "an admin port no scrape job targets": mutated(lambda m: (
            services(m)["oda-pg-sink"]["environment"].update(METRICS_ADDR="0.0.0.0:9470", ADMIN_PORT="9470"),
            services(m)["oda-pg-sink"]["healthcheck"].update(test=["CMD", "oda-healthcheck", "http://127.0.0.1:9470/healthz"]))),
        "a health check on another service's port": mutated(
            lambda m: services(m)["oda-pg-sink"]["healthcheck"].update(test=["CMD", "oda-healthcheck", "http://127.0.0.1:9468/healthz"])),
        "ADMIN_PORT unlike METRICS_ADDR": mutated(lambda m: services(m)["oda-pg-sink"]["environment"].update(ADMIN_PORT="9465")),
    }
    for what, broken in cases.items():
        if broken == text:
            sys.exit(f"check_compose: self-test case {what!r} changed nothing")
        try:
            check(broken, schema)
        except Invalid:
            continue
        sys.exit(f"check_compose: accepted a broken input: {what}")
    # And an interpolation case that must pass: defaults, `$$`, nesting.
    assert interpolate("${A:-${B:-x}}-$$-${C-}", {}, "t") == "x-$-"
    print(f"ok: {len(cases)} broken Compose files refused")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        sys.exit("usage: check_compose.py SCHEMA [--self-test]")
    try:
        if "--self-test" in sys.argv:
            self_test(args[0])
        else:
            main(args[0])
    except Invalid as error:
        sys.exit(f"check_compose: {error}")
