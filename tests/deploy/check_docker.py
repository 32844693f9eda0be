"""Offline checks of the Dockerfile's build against the cargo workspace,
since no Docker engine here can build the image (hadolint lints the
Dockerfile itself, in tests/deploy/validate.sh):

- the packages `cargo build -p …` names are workspace members;
- the binaries copied out of target/release are exactly the bin targets of
  those packages (a renamed binary, or a new one missing from the one image
  for every binary, is an error);
- .dockerignore, read with Docker's pattern rules, keeps in the build
  context what the build needs: Cargo.toml, Cargo.lock, and every member's
  manifest and sources;
- every base image and the syntax frontend are pinned by digest;
- the default target (the last stage, what `docker build .` makes and
  production runs) holds the services only: no oda-sim, no curl or wget,
  and a health check that runs one of its own binaries; a `sim` stage
  holds the simulator.

    python tests/deploy/check_docker.py [--self-test]
"""

import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Invalid(Exception):
    pass


def instructions(dockerfile_text):
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in dockerfile_text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def dockerignore_patterns(text):
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                regex += ".*"
                i += 2
                if pattern.startswith("/", i):
                    regex += "/?"
                    i += 1
                continue
            c = pattern[i]
            regex += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
            i += 1
        patterns.append((re.compile(regex + r"\Z"), negate))
    return patterns


def ignored(path, patterns):
    """Docker's rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for regex, negate in patterns:
        if any(regex.match(p) for p in prefixes):
            result = not negate
    return result


def bin_targets(member_dir):
    manifest = tomllib.loads((member_dir / "Cargo.toml").read_text(encoding="utf-8"))
    package = manifest["package"]
    bins = {b["name"] for b in manifest.get("bin", [])}
    if package.get("autobins", True):
        src = member_dir / "src"
        if (src / "main.rs").is_file():
            bins.add(package["name"])
        bins.update(p.stem for p in (src / "bin").glob("*.rs"))
        bins.update(p.parent.name for p in (src / "bin").glob("*/main.rs"))
    return package["name"], bins


def check(root, dockerfile_text, dockerignore_text):
    workspace = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))["workspace"]
    members = {}
    for member in workspace["members"]:
        name, bins = bin_targets(root / member)
        members[name] = (member, bins)
    builds = [i for i in instructions(dockerfile_text) if i.startswith("RUN") and "cargo build" in i]
    if len(builds) != 1:
        raise Invalid(f"expected one RUN with `cargo build`, found {len(builds)}")
    commands = [c.strip() for c in builds[0].split("&&")]
    cargo = next(c for c in commands if "cargo build" in c)
    packages = re.findall(r"(?:-p|--package)[ =](\S+)", cargo)
    copied = set()
    for command in commands:
        if command.startswith("cp "):
            copied |= set(re.findall(r"target/release/([A-Za-z0-9_-]+)", command))
    problems = []
    unknown = [p for p in packages if p not in members]
    if unknown:
        problems.append(f"`cargo build -p` names no workspace package: {', '.join(unknown)}")
    built = set()
    for package in packages:
        built |= members.get(package, (None, set()))[1]
    if copied - built:
        problems.append(f"copies binaries no built package has: {', '.join(sorted(copied - built))}")
    if built - copied:
        problems.append(f"binaries built but not copied into the image: {', '.join(sorted(built - copied))}")
    patterns = dockerignore_patterns(dockerignore_text)
    needed = ["Cargo.toml", "Cargo.lock"]
    for member, _ in members.values():
        needed.append(f"{member}/Cargo.toml")
        needed += [str(p.relative_to(root)) for p in sorted((root / member).glob("src/**/*.rs"))]
    excluded = [p for p in needed if ignored(p, patterns)]
    if excluded:
        problems.append(f".dockerignore leaves out of the build context what cargo needs: {', '.join(excluded[:5])}")
    problems += check_images(dockerfile_text)
    if problems:
        raise Invalid("Dockerfile: " + "; ".join(problems))
    return packages, copied


DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\b")


def stages(dockerfile_text):
    """[(name, base, instructions)] in order; a stage built on an earlier one names it as base."""
    out = []
    for instruction in instructions(dockerfile_text):
        words = instruction.split()
        if words[0].upper() == "FROM":
            args = [w for w in words[1:] if not w.startswith("--")]
            name = args[2] if len(args) >= 3 and args[1].upper() == "AS" else str(len(out))
            out.append((name, args[0], []))
        elif out:
            out[-1][2].append(instruction)
    return out


def binaries_by_output(dockerfile_text):
    """Where the build's `cp` puts each binary: output directory -> binaries."""
    found = {}
    for instruction in instructions(dockerfile_text):
        if not (instruction.startswith("RUN") and "cargo build" in instruction):
            continue
        for command in instruction.split("&&"):
            command = command.strip()
            if command.startswith("cp "):
                words = command.split()
                found.setdefault(words[-1].rstrip("/"), set()).update(
                    re.findall(r"target/release/([A-Za-z0-9_-]+)", command))
    return found


def stage_binaries(dockerfile_text):
    """Each stage's binaries, copied from the builder's outputs, its base stage's included."""
    outputs = binaries_by_output(dockerfile_text)
    held = {}
    for name, base, body in stages(dockerfile_text):
        binaries = set(held.get(base, set()))
        for instruction in body:
            if instruction.upper().startswith("COPY") and "--from=" in instruction:
                sources = [w for w in instruction.split()[1:] if not w.startswith("--")][:-1]
                for source in sources:
                    source = source.rstrip("/")
                    if source in outputs:
                        binaries |= outputs[source]
                    elif source.rsplit("/", 1)[0] in outputs:
                        binaries.add(source.rsplit("/", 1)[1])
        held[name] = binaries
    return held


def check_images(dockerfile_text):
    """Digests, and what the production (last) stage holds."""
    problems = []
    all_stages = stages(dockerfile_text)
    names = {name for name, _, _ in all_stages}
    first = dockerfile_text.splitlines()[0] if dockerfile_text else ""
    if first.startswith("# syntax=") and not DIGEST.search(first):
        problems.append("the syntax frontend is not pinned by digest")
    for name, base, _ in all_stages:
        if base not in names and not DIGEST.search(base):
            problems.append(f"stage {name}: base image {base} is not pinned by digest")
    if not all_stages:
        return ["no FROM"]
    held = stage_binaries(dockerfile_text)
    final, _, _ = all_stages[-1]
    lineage, stage = [], final
    by_name = {name: (base, body) for name, base, body in all_stages}
    while stage in by_name:
        lineage.append(stage)
        stage = by_name[stage][0]
    body = [i for s in lineage for i in by_name[s][1]]
    if "oda-sim" in held[final]:
        problems.append(f"the production image ({final}) holds oda-sim")
    for instruction in body:
        if instruction.startswith("RUN") and re.search(r"\b(curl|wget)\b", instruction.split("install", 1)[-1] if "install" in instruction else ""):
            problems.append(f"the production image ({final}) installs curl or wget")
    checks = [i for i in by_name[final][1] if i.upper().startswith("HEALTHCHECK")]
    if not checks:
        problems.append(f"the production image ({final}) has no HEALTHCHECK")
    for check in checks:
        command = re.search(r"CMD\s+\[\s*\"([^\"]+)\"", check)
        if not command or command.group(1) not in held[final]:
            problems.append(f"the production image's HEALTHCHECK does not run one of its binaries: {check}")
    if "oda-sim" not in held.get("sim", set()):
        problems.append("no `sim` stage holding oda-sim (docker-compose.yml builds it)")
    return problems


def read(name):
    return (ROOT / name).read_text(encoding="utf-8")


def main():
    packages, copied = check(ROOT, read("Dockerfile"), read(".dockerignore"))
    print(f"ok: the image builds {', '.join(packages)} and holds their {len(copied)} binaries; the build context has the workspace")


def self_test():
    dockerfile, dockerignore = read("Dockerfile"), read(".dockerignore")
    cases = {
        "a package that is not in the workspace": (dockerfile.replace("-p oda-consumers", "-p oda-consumer", 1), dockerignore),
        "a binary no package builds": (dockerfile.replace("target/release/oda-normalize", "target/release/oda-normalise", 1), dockerignore),
        "a binary left out of the image": (dockerfile.replace(" target/release/oda-replay", "", 1), dockerignore),
        "a workspace member ignored": (dockerfile, dockerignore + "\ncore/\n"),
        "the lock file ignored": (dockerfile, dockerignore + "\n*.lock\n"),
        "sources ignored by a ** pattern": (dockerfile, dockerignore + "\n**/*.rs\n"),
        "a base image by tag only": (re.sub(r"(debian:bookworm-slim)@sha256:[0-9a-f]{64}", r"\1", dockerfile, count=1), dockerignore),
        "the syntax frontend by tag only": (re.sub(r"(dockerfile:1)@sha256:[0-9a-f]{64}", r"\1", dockerfile, count=1), dockerignore),
        "curl in the production image": (dockerfile.replace("ca-certificates libssl3", "ca-certificates curl libssl3", 1), dockerignore),
        "the simulator in the production image": (dockerfile.replace("COPY --from=builder /out/services/ /usr/local/bin/", "COPY --from=builder /out/services/ /out/sim/ /usr/local/bin/", 1), dockerignore),
        "a health check with curl": (dockerfile.replace('CMD ["oda-healthcheck"]', 'CMD ["curl", "-f", "http://127.0.0.1:9464/healthz"]', 1), dockerignore),
        "no sim stage": (dockerfile.replace("AS sim", "AS simulator", 1), dockerignore),
    }
    for what, (broken_dockerfile, broken_ignore) in cases.items():
        if (broken_dockerfile, broken_ignore) == (dockerfile, dockerignore):
            sys.exit(f"check_docker: self-test case {what!r} changed nothing")
        try:
            check(ROOT, broken_dockerfile, broken_ignore)
        except Invalid:
            continue
        sys.exit(f"check_docker: accepted a broken input: {what}")
    # Docker's exception rule: a later `!` pattern puts a path back.
    assert not ignored("core/src/lib.rs", dockerignore_patterns("core/\n!core/src\n"))
    assert ignored("deploy/k8s/base/x.yaml", dockerignore_patterns("deploy/\n"))
    print(f"ok: {len(cases)} broken Dockerfile builds refused")


if __name__ == "__main__":
    try:
        if "--self-test" in sys.argv:
            self_test()
        else:
            main()
    except Invalid as error:
        sys.exit(f"check_docker: {error}")
