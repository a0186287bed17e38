#!/usr/bin/env python3
"""Checks what `docker compose up` needs without a Docker engine.

From the repository root:

    python3 dev-stack/tests/compose_check.py

1. Every variable docker-compose.yml requires (`${VAR:?...}` or `${VAR?...}`) is set by the
   README's "Production-like run (docker compose)" commands: exported (`export A=... B=...`,
   or a `for v in A B; do export $v=...; done` loop), or assigned in front of `docker compose`.
   Compose refuses to start without them, so a README that forgets one cannot be followed.
2. docker-compose.yml is valid against the compose-spec JSON schema:
   `check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml`
   (pip install check-jsonschema).
3. .dockerignore keeps local files out of the build context (`COPY . .` in the Dockerfile):
   certs/ (development private keys) and whatever any .gitignore ignores.
4. docker-compose.replicas.yml (an override of docker-compose.yml: two replicas of each service
   behind nginx) is valid against the same schema (Compose's own `!reset` / `!override` tags
   taken out first: the schema's YAML parser does not know them), requires no variable
   docker-compose.yml does not, runs two replicas of each service that publish no port and
   trust the balancer's fixed address (TRUSTED_PROXIES), and gives the balancer only settings
   deploy/nginx/render.sh reads (and the two it requires) from files that exist; the README's
   "Running several replicas" commands pass both files to `docker compose`.

Prints one line per check and ends with `N passed, N failed`; exits 1 if any check failed.
Python 3.11 standard library (plus the check-jsonschema command).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # nothing left behind in dev-stack/tests
sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_walkthrough import Checks, info, section, sh_blocks  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
README_SECTION = "Production-like run (docker compose)"
REPLICAS = REPO / "docker-compose.replicas.yml"
REPLICAS_SECTION = "Running several replicas"
# How every `docker compose` command of that section must start.
REPLICAS_COMMAND = "docker compose -f docker-compose.yml -f docker-compose.replicas.yml"
# Compose's merge tags, which only Compose knows.
MERGE_TAGS = re.compile(r"!(?:reset|override)\b[ \t]*")
# The settings deploy/nginx/render.sh reads (its header describes each), and those it requires.
BALANCER_SETTINGS = [
    "AUTH_UPSTREAMS", "TASK_UPSTREAMS", "LISTEN_HOST", "AUTH_GRPC_PORT", "TASK_GRPC_PORT",
    "AUTH_WEB_PORT", "TASK_WEB_PORT", "TLS_CERT_FILE", "TLS_KEY_FILE", "UPSTREAM_CA_FILE",
    "AUTH_TLS_NAME", "TASK_TLS_NAME", "ACCESS_LOG", "WORKER_PROCESSES", "NGINX_BIN",
    "UPSTREAM_BIND",
]
BALANCER_REQUIRED = ["AUTH_UPSTREAMS", "TASK_UPSTREAMS"]
NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# Always in the build context's ignore list, whatever .gitignore says.
MUST_IGNORE = ["certs/ca.pem", "certs/server-key.pem", "certs/client-key.pem"]
# Not worth scanning for .gitignore files (ignored themselves, and large).
SKIP_DIRS = {".git", "node_modules", "target", "data", "certs", "dist", "gen", "__pycache__"}


# --- 1. the compose file's variables and the README's ---------------------------------


def required_variables(compose: str) -> list[str]:
    """Names the file requires with `${VAR:?msg}` / `${VAR?msg}` (not in comments; `$$` is a
    literal dollar)."""
    names: list[str] = []
    for line in compose.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(rf"(?<!\$)\$\{{({NAME}):?\?", line):
            if match.group(1) not in names:
                names.append(match.group(1))
    return names


def mask(code: str) -> str:
    """The shell code without comments, and with every quoted string, `$(...)` and backquoted
    part replaced by `X`, so that the words inside them are not read as commands or names."""
    out: list[str] = []
    i = 0
    while i < len(code):
        c = code[i]
        if c == "#" and (i == 0 or code[i - 1] in " \t\n;&|("):  # a comment, to the line's end
            end = code.find("\n", i)
            i = len(code) if end < 0 else end
        elif c == "'":
            end = code.find("'", i + 1)
            i = len(code) if end < 0 else end + 1
            out.append("X")
        elif c == '"' or c == "`":
            i += 1
            while i < len(code) and code[i] != c:
                i += 2 if code[i] == "\\" else 1
            i += 1
            out.append("X")
        elif code.startswith("$(", i):
            depth, i = 1, i + 2
            while i < len(code) and depth:
                depth += {"(": 1, ")": -1}.get(code[i], 0)
                i += 1
            out.append("X")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def exported_variables(block: str) -> list[str]:
    """Names a ```sh block makes visible to `docker compose`: exported with a value, exported
    by a `for v in ...; do export $v=...; done` loop, or assigned in front of `docker`."""
    code = mask(re.sub(r"\\\n", " ", block))
    names: list[str] = []

    def add(name: str) -> None:
        if name not in names:
            names.append(name)

    loop = re.compile(rf"\bfor\s+({NAME})\s+in\s+([^;\n]*?)\s*[;\n]\s*do\b(.*?)\bdone\b", re.S)
    for match in loop.finditer(code):
        var, words, body = match.groups()
        if re.search(rf"\bexport\s+\$\{{?{var}\}}?=", body):
            for word in words.split():
                if re.fullmatch(NAME, word):
                    add(word)
    code = loop.sub(";", code)

    assigned: set[str] = set()
    for command in re.split(r"\n|;|&&|\|\||\|", code):
        words = command.split()
        if not words:
            continue
        if words[0] == "export":
            for word in words[1:]:
                name, eq, _ = word.partition("=")
                if re.fullmatch(NAME, name) and (eq or name in assigned):
                    add(name)
            continue
        n = 0
        while n < len(words) and re.match(rf"{NAME}=", words[n]):
            n += 1
        prefix, rest = [w.partition("=")[0] for w in words[:n]], words[n:]
        if not rest:
            assigned.update(prefix)  # a shell variable, not exported
        elif rest[0] == "docker":
            for name in prefix:
                add(name)
    return names


def check_readme_sets_required(checks: Checks) -> None:
    required = required_variables(COMPOSE.read_text())
    info(f"docker-compose.yml requires: {', '.join(required) or '(nothing)'}")
    try:
        blocks = sh_blocks(section((REPO / "README.md").read_text(), README_SECTION))
    except ValueError as e:
        checks.check(False, str(e))
        return
    exported: list[str] = []
    for _, code in blocks:
        exported += [name for name in exported_variables(code) if name not in exported]
    info(f"README '{README_SECTION}' ({len(blocks)} sh block(s)) exports: {', '.join(exported) or '(nothing)'}")
    missing = [name for name in required if name not in exported]
    checks.check(
        bool(blocks) and not missing,
        f"README '{README_SECTION}' sets every variable docker-compose.yml requires"
        + (f"; missing: {', '.join(missing)}" if missing else ""),
    )


# --- 2. the compose-spec schema -------------------------------------------------------


def check_schema(checks: Checks) -> None:
    command = shutil.which("check-jsonschema")
    if command is None:
        checks.check(False, "check-jsonschema is on PATH (to install: python3 -m pip install check-jsonschema)")
        return
    argv = [command, "--builtin-schema", "vendor.compose-spec", str(COMPOSE.relative_to(REPO))]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, errors="replace")
    checks.check(
        done.returncode == 0,
        f"`check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml` (exit {done.returncode})",
        done.stdout + done.stderr,
    )
    if not REPLICAS.is_file():
        return  # check_replicas says so
    with tempfile.TemporaryDirectory() as tmp:
        untagged = Path(tmp) / REPLICAS.name
        untagged.write_text(MERGE_TAGS.sub("", REPLICAS.read_text()))
        done = subprocess.run(
            [command, "--builtin-schema", "vendor.compose-spec", str(untagged)],
            capture_output=True, text=True, errors="replace",
        )
    checks.check(
        done.returncode == 0,
        f"{REPLICAS.name} (without its !reset/!override tags) is valid against the compose-spec schema (exit {done.returncode})",
        done.stdout + done.stderr,
    )


# --- 3. .dockerignore -----------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regular expression."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") or body.startswith("!") else body) + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str], str]]:
    """(exclude?, regex, as written) per line: as Docker reads it, relative to the context root."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).replace(os.sep, "/").lstrip("/")
        rules.append((exclude, glob_regex(pattern), line))
    return rules


def ignored(rules: list[tuple[bool, re.Pattern[str], str]], path: str) -> bool:
    """Whether Docker leaves `path` out of the context: the last rule matching it or one of its
    parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for exclude, regex, _ in rules:
        if any(regex.match(candidate) for candidate in candidates):
            verdict = exclude
    return verdict


def gitignore_samples(directory: str, line: str) -> list[str]:
    """Paths (relative to the repository) that a .gitignore line in `directory` ignores: one
    made-up name per glob, at the top and nested when the pattern is not anchored."""
    pattern = line.rstrip()
    if not pattern or pattern.startswith("#") or pattern.startswith("!"):
        return []
    dir_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    anchored = "/" in pattern and not pattern.startswith("**/")
    pattern = pattern.lstrip("/").removeprefix("**/")
    name = re.sub(r"\[!?([^\]])[^\]]*\]", r"\1", pattern).replace("**", "deep").replace("*", "sample").replace("?", "q")
    base = f"{directory}/" if directory else ""
    paths = [base + name] if anchored else [base + name, base + "nested/" + name]
    return [p + "/inside" for p in paths] if dir_only else paths


def gitignore_files() -> list[Path]:
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        if ".gitignore" in files:
            found.append(Path(root) / ".gitignore")
    return found


def check_dockerignore(checks: Checks) -> None:
    path = REPO / ".dockerignore"
    if not checks.check(path.is_file(), ".dockerignore exists"):
        return
    rules = dockerignore_rules(path.read_text())
    leaked = [p for p in MUST_IGNORE if not ignored(rules, p)]
    checks.check(not leaked, ".dockerignore excludes certs/ (development private keys)", "\n".join(leaked))
    for gitignore in gitignore_files():
        directory = gitignore.parent.relative_to(REPO).as_posix()
        directory = "" if directory == "." else directory
        for line in gitignore.read_text().splitlines():
            samples = gitignore_samples(directory, line)
            if not samples:
                continue
            leaked = [p for p in samples if not ignored(rules, p)]
            where = gitignore.relative_to(REPO).as_posix()
            checks.check(
                not leaked,
                f".dockerignore excludes what {where} ignores: {line.strip()}"
                + (f" (not excluded: {', '.join(leaked)})" if leaked else ""),
            )


# --- 4. docker-compose.replicas.yml ----------------------------------------------------


def replicas_schema() -> dict:
    """What the replicas' override must say, as a JSON schema (check-jsonschema reads YAML)."""
    replica = {
        "type": "object",
        "required": ["deploy", "ports", "environment", "networks"],
        "properties": {
            "deploy": {"type": "object", "required": ["replicas"], "properties": {"replicas": {"type": "integer", "minimum": 2}}},
            # `ports: !reset []`: the replicas publish nothing; only the balancer does.
            "ports": {"type": "array", "maxItems": 0},
            "environment": {"type": "object", "required": ["TRUSTED_PROXIES"]},
            "networks": {"type": "array", "allOf": [{"contains": {"const": "default"}}, {"contains": {"const": "edge"}}]},
        },
    }
    healthy = {"type": "object", "required": ["condition"], "properties": {"condition": {"const": "service_healthy"}}}
    balancer = {
        "type": "object",
        "required": ["image", "command", "environment", "volumes", "ports", "networks", "depends_on"],
        "properties": {
            "environment": {
                "type": "object",
                "required": BALANCER_REQUIRED,
                "propertyNames": {"enum": BALANCER_SETTINGS},
            },
            "ports": {"type": "array", "allOf": [{"contains": {"const": f"{p}:{p}"}} for p in (8051, 8052, 8151, 8152)]},
            "networks": {"type": "object", "required": ["edge"],
                         "properties": {"edge": {"type": "object", "required": ["ipv4_address"]}}},
            "depends_on": {
                "type": "object",
                "required": ["auth-service", "task-service"],
                "properties": {"auth-service": healthy, "task-service": healthy},
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["services", "networks"],
        "properties": {
            "services": {
                "type": "object",
                "required": ["auth-service", "task-service", "balancer"],
                "properties": {"auth-service": replica, "task-service": replica, "balancer": balancer},
            },
            "networks": {"type": "object", "required": ["edge"]},
        },
    }


def yaml_values(text: str, key: str) -> list[str]:
    """Every `key: value` of a block-style YAML file (enough for ours; no YAML library)."""
    return [m.group(1).strip().strip("\"'") for m in re.finditer(rf"^\s*(?:-\s+)?{re.escape(key)}:[ \t]*(\S[^#\n]*)", text, re.M)]


def check_replicas(checks: Checks) -> None:
    if not checks.check(REPLICAS.is_file(), f"{REPLICAS.name} exists"):
        return
    text = REPLICAS.read_text()

    base = required_variables(COMPOSE.read_text())
    extra = [name for name in required_variables(text) if name not in base]
    checks.check(
        not extra,
        f"{REPLICAS.name} requires no variable docker-compose.yml does not (so the README's commands set them)",
        ", ".join(extra),
    )

    command = shutil.which("check-jsonschema")
    if command is not None:
        with tempfile.TemporaryDirectory() as tmp:
            schema = Path(tmp) / "replicas.schema.json"
            schema.write_text(json.dumps(replicas_schema()))
            untagged = Path(tmp) / REPLICAS.name
            untagged.write_text(MERGE_TAGS.sub("", text))
            done = subprocess.run(
                [command, "--schemafile", str(schema), str(untagged)],
                capture_output=True, text=True, errors="replace",
            )
        checks.check(
            done.returncode == 0,
            f"{REPLICAS.name}: two or more replicas of each service, publishing no port, trusting a proxy, "
            "on the balancer's network; the balancer waits for both, publishes 8051/8052/8151/8152 and sets "
            f"only what render.sh reads ({', '.join(BALANCER_REQUIRED)} among them)",
            done.stdout + done.stderr,
        )

    render = (REPO / "deploy/nginx/render.sh").read_text() if (REPO / "deploy/nginx/render.sh").is_file() else ""
    unread = [name for name in BALANCER_SETTINGS if name not in render]
    checks.check(bool(render) and not unread, "deploy/nginx/render.sh reads every balancer setting listed here", ", ".join(unread))
    mounted = [m.group(1) for m in re.finditer(r"^\s*-\s*(\./[^:\s]+):", text, re.M)]
    absent = [path for path in mounted if not (REPO / path).exists()]
    checks.check(bool(mounted) and not absent, f"{REPLICAS.name} mounts files that exist: {', '.join(mounted)}", ", ".join(absent))
    for name in ["nginx.conf.template", "render.sh"]:
        checks.check((REPO / "deploy/nginx" / name).is_file(), f"deploy/nginx/{name} exists")

    # The services trust exactly the balancer's address, inside the edge network.
    addresses = yaml_values(text, "ipv4_address")
    subnets = yaml_values(text, "subnet")
    trusted = yaml_values(text, "TRUSTED_PROXIES")
    try:
        balancer = ipaddress.ip_address(addresses[0]) if len(addresses) == 1 else None
        nets = [ipaddress.ip_network(s, strict=False) for s in subnets]
        trusts = [[ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",")] for value in trusted]
        ok = (
            balancer is not None
            and any(balancer in net for net in nets)
            and len(trusts) == 2
            and all(any(balancer in net for net in nets_) and all(net.num_addresses == 1 for net in nets_) for nets_ in trusts)
        )
        details = f"ipv4_address={addresses} subnet={subnets} TRUSTED_PROXIES={trusted}"
    except ValueError as e:
        ok, details = False, str(e)
    checks.check(
        ok,
        "both services' TRUSTED_PROXIES is the balancer's fixed address (and nothing wider), inside the edge subnet",
        details,
    )


def check_readme_replicas(checks: Checks) -> None:
    try:
        blocks = sh_blocks(section((REPO / "README.md").read_text(), REPLICAS_SECTION))
    except ValueError as e:
        checks.check(False, f"{e} (it documents {REPLICAS.name})")
        return
    commands = [
        line.strip()
        for _, code in blocks
        for line in mask(re.sub(r"\\\n", " ", code)).splitlines()
        if re.search(r"\bdocker\s+compose\b", line)
    ]
    wrong = [c for c in commands if REPLICAS_COMMAND not in re.sub(r"\s+", " ", c)]
    checks.check(
        bool(commands) and not wrong,
        f"README '{REPLICAS_SECTION}' runs every `docker compose` as `{REPLICAS_COMMAND} ...`",
        "\n".join(wrong) or "(no docker compose command)",
    )


def main() -> int:
    checks = Checks()
    check_readme_sets_required(checks)
    check_schema(checks)
    check_dockerignore(checks)
    check_replicas(checks)
    check_readme_replicas(checks)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
