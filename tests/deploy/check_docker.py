"""Offline checks of the Dockerfile's build against the cargo workspace,
since no Docker engine here can build the image (hadolint lints the
Dockerfile itself, in tests/deploy/validate.sh):

- the packages `cargo build -p …` names are workspace members;
- the binaries copied out of target/release are exactly the bin targets of
  those packages (a renamed binary, or a new one missing from the one image
  for every binary, is an error);
- .dockerignore, read with Docker's pattern rules, keeps in the build
  context what the build needs: Cargo.toml, Cargo.lock, and every member's
  manifest and sources.

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
    if problems:
        raise Invalid("Dockerfile: " + "; ".join(problems))
    return packages, copied


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
