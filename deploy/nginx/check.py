#!/usr/bin/env python3
"""Checks the replicas' balancer (deploy/nginx) without Docker and without the Rust services.

From the repository root:

    python3 deploy/nginx/check.py

Needs nginx and envsubst (Debian: `apt-get install nginx-light gettext-base`), openssl, curl
and grpcio (`python3 -m pip install grpcio`).

1. render.sh refuses settings that cannot work, and what it renders has no placeholder left;
   `nginx -t` accepts it, plaintext and with TLS on both sides.
2. nginx runs on loopback (as `nobody` in half the rounds when this runs as root, to show it
   needs no privileges: pid, logs and temporary files under its prefix) in front of two
   stand-in replicas per service: grpcio servers for native gRPC, small HTTP/1.1 servers for
   grpc-web. Four rounds: plaintext and TLS (towards clients and towards the replicas), each
   with the two services' roles swapped, so every port and upstream group is used. Each round:
   - a server stream's first message reaches the client while the replica still sleeps
     (DELAY seconds) before the next: over gRPC, over grpc-web with Python's HTTP/1.1 client,
     and with curl (HTTP/1.1 in plaintext, HTTP/2 over TLS);
   - the replica sees X-Forwarded-For with the client appended, and no Forwarded;
   - calls are spread over both replicas, statuses and trailers pass untouched (a gRPC error,
     grpc-web's trailers frame, an HTTP 415), a CORS preflight reaches a replica and its
     answer comes back;
   - with one replica stopped every call is still served; with both stopped nginx answers
     UNAVAILABLE (gRPC status 14) itself;
   - a reload (SIGHUP, as `nginx -s reload`) keeps it serving;
   - the replicas see nginx connect from 127.0.0.2 when UPSTREAM_BIND says so.
   nginx's error log must have no [alert], [crit] or [emerg] line.

Prints one line per check and ends with `N passed, N failed`; exits 1 if any check failed.
Every process it starts is stopped before it ends.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.dont_write_bytecode = True

HERE = Path(__file__).resolve().parent
RENDER = HERE / "render.sh"
DELAY = 2.0  # how long a stand-in replica sleeps between a stream's two messages
SOON = 1.0  # the first message must arrive before this (well before DELAY)
CLIENT = "203.0.113.9"  # what the client claims in its own X-Forwarded-For


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
            for line in details.rstrip().splitlines()[-40:]:
                print(f"      | {line}", flush=True)
        return ok

    def finish(self) -> int:
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(flag: int, data: bytes) -> bytes:
    """A gRPC(-web) length-prefixed frame: 0x00 data, 0x80 grpc-web trailers."""
    return bytes([flag]) + len(data).to_bytes(4, "big") + data


TRAILERS = frame(0x80, b"grpc-status:0\r\ngrpc-message:\r\n")


# --- stand-in replicas ----------------------------------------------------------------------


class WebReplica:
    """An HTTP/1.1 grpc-web server: /test.Echo/Stream sends a frame, sleeps, sends another and
    the trailers frame, each as its own chunk; any other POST answers one frame naming the
    replica; OPTIONS answers a CORS preflight; a content type that is not grpc-web gets 415."""

    def __init__(self, name: str, tls: ssl.SSLContext | None) -> None:
        self.name = name
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.peers: set[str] = set()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        replica = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with replica.lock:
                    replica.open.add(self.connection)

            def finish(self) -> None:
                with replica.lock:
                    replica.open.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def record(self, body: bytes) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                with replica.lock:
                    replica.seen.append((self.command, self.path, headers, body))
                    replica.peers.add(self.client_address[0])

            def chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

            def do_OPTIONS(self) -> None:
                self.record(self.body())
                self.send_response(204)
                self.send_header("access-control-allow-origin", self.headers.get("origin", ""))
                self.send_header("access-control-allow-methods", "POST")
                self.send_header("access-control-allow-headers", self.headers.get("access-control-request-headers", ""))
                self.send_header("access-control-max-age", "600")
                self.end_headers()

            def do_POST(self) -> None:
                body = self.body()
                self.record(body)
                if not self.headers.get("content-type", "").startswith("application/grpc-web"):
                    text = b"not grpc-web\n"
                    self.send_response(415)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/grpc-web+proto")
                self.send_header("x-replica", replica.name)
                if self.path.endswith("/Stream"):
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    self.chunk(frame(0, b"first"))
                    time.sleep(DELAY)
                    self.chunk(frame(0, b"second"))
                    self.chunk(TRAILERS)
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    reply = frame(0, b"replica:" + replica.name.encode()) + TRAILERS
                    self.send_header("content-length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        """Stops like a replica that died: no new connections, open ones cut."""
        if not self.running:
            return
        self.running = False
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for conn in list(self.open):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class NativeReplica:
    """A grpcio server with /test.Echo/Unary (answers the replica's name), /Stream (a message,
    DELAY seconds, another, then trailing metadata) and /Fail (NOT_FOUND)."""

    def __init__(self, name: str, grpc, credentials) -> None:  # noqa: ANN001
        self.name = name
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.peers: set[str] = set()
        self.lock = threading.Lock()
        self.grpc = grpc

        def record(method: str, context) -> None:  # noqa: ANN001
            with self.lock:
                self.seen.append((method, {k: v for k, v in context.invocation_metadata()}))
                self.peers.add(context.peer().rsplit(":", 1)[0].removeprefix("ipv4:"))

        def unary(request: bytes, context) -> bytes:  # noqa: ANN001
            record("Unary", context)
            return b"replica:" + name.encode()

        def stream(request: bytes, context):  # noqa: ANN001, ANN202
            record("Stream", context)
            context.set_trailing_metadata((("x-replica", name),))
            yield b"first"
            time.sleep(DELAY)
            yield b"second"

        def fail(request: bytes, context) -> bytes:  # noqa: ANN001
            record("Fail", context)
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
            return b""

        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
        }
        self.server = grpc.server(ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.stop(0).wait()


# --- nginx --------------------------------------------------------------------------------


def render(env: dict[str, str], out: Path | None) -> subprocess.CompletedProcess[str]:
    argv = ["sh", str(RENDER)] + ([str(out)] if out else [])
    full = {k: v for k, v in os.environ.items() if k not in RENDER_NAMES} | env
    return subprocess.run(argv, env=full, capture_output=True, text=True)


RENDER_NAMES = {
    "AUTH_UPSTREAMS", "TASK_UPSTREAMS", "LISTEN_HOST", "AUTH_GRPC_PORT", "TASK_GRPC_PORT",
    "AUTH_WEB_PORT", "TASK_WEB_PORT", "TLS_CERT_FILE", "TLS_KEY_FILE", "UPSTREAM_CA_FILE",
    "AUTH_TLS_NAME", "TASK_TLS_NAME", "ACCESS_LOG", "WORKER_PROCESSES", "NGINX_BIN",
    "UPSTREAM_BIND",
}


def nginx_argv(prefix: Path, *extra: str) -> list[str]:
    """How a test runs nginx: everything it writes under `prefix`, no root needed."""
    return [
        "nginx", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr",
        "-g", f"pid {prefix}/nginx.pid; daemon off;", *extra,
    ]


def as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]


class Nginx:
    def __init__(self, prefix: Path, ports: list[int], unprivileged: bool) -> None:
        argv = nginx_argv(prefix)
        self.log = open(prefix / "stderr.log", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            as_nobody(argv) if unprivileged else argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 10
        waiting = list(ports)
        while waiting and time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        self.ready = not waiting and self.proc.poll() is None

    def errors(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown: the master stops its workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- clients ------------------------------------------------------------------------------


def web_call(port: int, path: str, tls: ssl.SSLContext | None, body: bytes = b"",
             method: str = "POST", headers: dict[str, str] | None = None):
    """(status, headers, [(seconds since the request, bytes)]) of one HTTP/1.1 request."""
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=15, context=tls)
    try:
        start = time.monotonic()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        pieces = []
        while True:
            data = resp.read1(65536)
            if not data:
                break
            pieces.append((time.monotonic() - start, data))
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, pieces
    finally:
        conn.close()


GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
FORWARDING = {"x-forwarded-for": CLIENT, "forwarded": "for=198.51.100.1"}


def curl_stream(port: int, tls: bool, ca: Path, workdir: Path):
    """(curl's exit code, HTTP version, [(seconds, bytes)]) of a grpc-web stream through nginx:
    HTTP/1.1 in plaintext, HTTP/2 over TLS."""
    request = workdir / "request.bin"
    request.write_bytes(frame(0, b"watch"))
    scheme = "https" if tls else "http"
    argv = ["curl", "-sS", "-N", "--max-time", "15", "-X", "POST", "--data-binary", f"@{request}",
            "-H", "content-type: application/grpc-web+proto", "-H", "x-grpc-web: 1",
            "-w", "%{stderr}%{http_version}"]
    argv += ["--http2", "--cacert", str(ca)] if tls else ["--http1.1"]
    argv.append(f"{scheme}://127.0.0.1:{port}/test.Echo/Stream")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pieces = []
    assert proc.stdout is not None and proc.stderr is not None
    while True:
        data = os.read(proc.stdout.fileno(), 65536)
        if not data:
            break
        pieces.append((time.monotonic() - start, data))
    code = proc.wait()
    return code, proc.stderr.read().decode(errors="replace").strip(), pieces


# --- one round ------------------------------------------------------------------------------


def certificates(workdir: Path) -> Path:
    """A CA and a server certificate for localhost, 127.0.0.1, auth-service and task-service."""
    d = workdir / "certs"
    d.mkdir()
    ext = d / "ext.cnf"
    ext.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:auth-service,DNS:task-service\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1", "-subj", "/CN=check CA"],
        ["openssl", "req", *ec, "-keyout", "server-key.pem", "-out", "server.csr", "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
         "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf"],
    ]
    for argv in steps:
        subprocess.run(argv, cwd=d, check=True, capture_output=True)
    return d


def run_round(checks: Checks, grpc, workdir: Path, certs: Path, tls: bool, swap: bool,  # noqa: ANN001
              unprivileged: bool) -> None:
    native_svc, web_svc = ("task", "auth") if swap else ("auth", "task")
    label = f"[{'TLS' if tls else 'plaintext'}, native={native_svc}, grpc-web={web_svc}, nginx as {'nobody' if unprivileged else os.environ.get('USER', 'this user')}]"
    prefix = Path(tempfile.mkdtemp(prefix="lb-", dir=workdir))
    prefix.chmod(0o755)

    server_ctx = client_ctx = None
    grpc_server_creds = grpc_client_creds = None
    if tls:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
        client_ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        key, cert, ca = ((certs / n).read_bytes() for n in ("server-key.pem", "server.pem", "ca.pem"))
        grpc_server_creds = grpc.ssl_server_credentials(((key, cert),))
        grpc_client_creds = grpc.ssl_channel_credentials(root_certificates=ca)

    natives = [NativeReplica(f"{native_svc}-{i}", grpc, grpc_server_creds) for i in (1, 2)]
    webs = [WebReplica(f"{web_svc}-{i}", server_ctx) for i in (1, 2)]
    ports = {name: free_port() for name in ("AUTH_GRPC_PORT", "TASK_GRPC_PORT", "AUTH_WEB_PORT", "TASK_WEB_PORT")}
    env = {k: str(v) for k, v in ports.items()} | {
        f"{native_svc.upper()}_UPSTREAMS": " ".join(f"127.0.0.1:{r.port}" for r in natives),
        f"{web_svc.upper()}_UPSTREAMS": ",".join(f"127.0.0.1:{r.port}" for r in webs),
        "ACCESS_LOG": "access.log",
        "WORKER_PROCESSES": "2",
    }
    # In the swapped rounds nginx connects to the replicas from 127.0.0.2 (UPSTREAM_BIND), as a
    # test of the real services would, to trust nginx (TRUSTED_PROXIES) and not its own clients.
    source = "127.0.0.2" if swap else "127.0.0.1"
    if swap:
        env["UPSTREAM_BIND"] = source
    if tls:
        env |= {
            "TLS_CERT_FILE": str(certs / "server.pem"),
            "TLS_KEY_FILE": str(certs / "server-key.pem"),
            "UPSTREAM_CA_FILE": str(certs / "ca.pem"),
            "AUTH_TLS_NAME": "auth-service",
            "TASK_TLS_NAME": "task-service",
        }
    nginx = None
    try:
        done = render(env, prefix / "nginx.conf")
        if not checks.check(done.returncode == 0, f"{label} render.sh", done.stderr):
            return
        if unprivileged:
            subprocess.run(["chown", "-R", "nobody:nogroup", str(prefix)], check=True)
        argv = nginx_argv(prefix, "-t")
        done = subprocess.run(as_nobody(argv) if unprivileged else argv, capture_output=True, text=True)
        if not checks.check(done.returncode == 0, f"{label} nginx -t", done.stderr):
            return
        nginx = Nginx(prefix, list(ports.values()), unprivileged)
        if not checks.check(nginx.ready, f"{label} nginx listens on its four ports", nginx.errors()):
            return
        native_port = ports[f"{native_svc.upper()}_GRPC_PORT"]
        web_port = ports[f"{web_svc.upper()}_WEB_PORT"]
        native_checks(checks, grpc, label, native_port, natives, grpc_client_creds, native_svc)
        # A reload (nginx -s reload: SIGHUP to the master) re-reads the configuration, its
        # certificates and the replicas' addresses; the grpc-web checks then run on the new
        # workers.
        nginx.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        checks.check(
            nginx.proc.poll() is None and all(accepts(p) for p in ports.values()),
            f"{label} nginx reloads (SIGHUP) and listens on",
            nginx.errors(),
        )
        web_checks(checks, label, web_port, webs, client_ctx, certs, prefix, web_svc)
        peers = set().union(*(r.peers for r in [*natives, *webs]))
        checks.check(peers == {source}, f"{label} the replicas see nginx connect from {source}", repr(peers))
        log = nginx.errors()
        bad = [line for line in log.splitlines() if re.search(r"\[(alert|crit|emerg)\]", line)]
        checks.check(not bad, f"{label} nginx logged no alert, crit or emerg", "\n".join(bad))
    finally:
        if nginx is not None:
            nginx.stop()
        for replica in [*natives, *webs]:
            replica.stop()


def native_checks(checks: Checks, grpc, label: str, port: int, replicas: list[NativeReplica],  # noqa: ANN001
                  creds, service: str) -> None:  # noqa: ANN001
    target = f"127.0.0.1:{port}"
    if creds is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, creds, options=(("grpc.ssl_target_name_override", "localhost"),))
    metadata = tuple(FORWARDING.items())
    try:
        # A server stream, unbuffered.
        start = time.monotonic()
        stream = channel.unary_stream("/test.Echo/Stream")(b"watch", metadata=metadata, timeout=15)
        first = next(stream)
        first_at = time.monotonic() - start
        rest = list(stream)
        total = time.monotonic() - start
        trailing = dict(stream.trailing_metadata() or ())
        checks.check(
            first == b"first" and first_at < SOON and rest == [b"second"] and total >= DELAY * 0.9,
            f"{label} gRPC: a stream's first message arrives at once ({first_at:.2f} s; the second after {total:.2f} s)",
            f"first={first!r} rest={rest!r}",
        )
        checks.check(trailing.get("x-replica", "").startswith(service), f"{label} gRPC: trailing metadata passes", repr(trailing))

        # Forwarded client, spread over both replicas.
        unary = channel.unary_unary("/test.Echo/Unary")
        answers = [unary(b"hi", metadata=metadata, timeout=10) for _ in range(8)]
        seen = [md for r in replicas for (m, md) in r.seen]
        xff = {md.get("x-forwarded-for") for md in seen}
        checks.check(xff == {f"{CLIENT}, 127.0.0.1"}, f"{label} gRPC: replicas see X-Forwarded-For '{CLIENT}, 127.0.0.1'", repr(xff))
        checks.check(all("forwarded" not in md for md in seen), f"{label} gRPC: the client's Forwarded header is dropped")
        checks.check(
            {a.decode() for a in answers} == {f"replica:{r.name}" for r in replicas},
            f"{label} gRPC: calls are spread over both replicas",
            repr(answers),
        )

        # A replica's error status passes untouched.
        try:
            channel.unary_unary("/test.Echo/Fail")(b"", timeout=10)
            checks.check(False, f"{label} gRPC: a replica's NOT_FOUND reaches the client", "the call succeeded")
        except grpc.RpcError as e:
            checks.check(
                e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "no such thing",
                f"{label} gRPC: a replica's NOT_FOUND reaches the client",
                f"{e.code()} {e.details()!r}",
            )

        # Failover.
        replicas[0].stop()
        try:
            after = [unary(b"hi", timeout=10) for _ in range(6)]
            checks.check(set(after) == {f"replica:{replicas[1].name}".encode()}, f"{label} gRPC: with one replica stopped every call is served", repr(after))
        except grpc.RpcError as e:
            checks.check(False, f"{label} gRPC: with one replica stopped every call is served", f"{e.code()} {e.details()!r}")
        replicas[1].stop()
        try:
            unary(b"hi", timeout=10)
            checks.check(False, f"{label} gRPC: with no replica nginx answers UNAVAILABLE", "the call succeeded")
        except grpc.RpcError as e:
            checks.check(
                e.code() == grpc.StatusCode.UNAVAILABLE and e.details() == f"no {service}-service replica answered",
                f"{label} gRPC: with no replica nginx answers UNAVAILABLE",
                f"{e.code()} {e.details()!r}",
            )
    finally:
        channel.close()


def web_checks(checks: Checks, label: str, port: int, replicas: list[WebReplica],
               tls: ssl.SSLContext | None, certs: Path, workdir: Path, service: str) -> None:
    headers = GRPC_WEB | FORWARDING | {"origin": "http://localhost:5173"}
    request = frame(0, b"watch")

    # A server stream, unbuffered, trailers frame at the end of the body.
    status, got, pieces = web_call(port, "/test.Echo/Stream", tls, request, headers=headers)
    body = b"".join(p for _, p in pieces)
    first_at = pieces[0][0] if pieces else float("inf")
    checks.check(
        status == 200 and pieces and frame(0, b"first") in pieces[0][1] and first_at < SOON and pieces[-1][0] >= DELAY * 0.9,
        f"{label} grpc-web: a stream's first message arrives at once ({first_at:.2f} s; the end after {pieces[-1][0] if pieces else 0:.2f} s)",
        f"status={status} pieces={pieces!r}",
    )
    checks.check(
        body == frame(0, b"first") + frame(0, b"second") + TRAILERS,
        f"{label} grpc-web: both messages and the trailers frame pass untouched",
        repr(body),
    )
    request_bodies = [b for r in replicas for (m, _, _, b) in r.seen if m == "POST"]
    checks.check(request_bodies == [request], f"{label} grpc-web: the request body reaches the replica whole", repr(request_bodies))

    code, version, pieces = curl_stream(port, tls is not None, certs / "ca.pem", workdir)
    first_at = pieces[0][0] if pieces else float("inf")
    checks.check(
        code == 0 and pieces and pieces[0][1].startswith(frame(0, b"first")) and first_at < SOON
        and b"".join(p for _, p in pieces).endswith(TRAILERS),
        f"{label} grpc-web: curl over HTTP/{version} shows the first message at once ({first_at:.2f} s)",
        f"curl exit {code}, pieces={pieces!r}",
    )

    # Forwarded client, spread over both replicas.
    answers = set()
    for _ in range(8):
        status, got, pieces = web_call(port, "/test.Echo/Unary", tls, request, headers=headers)
        answers.add(got.get("x-replica"))
    seen = [h for r in replicas for (m, path, h, _) in r.seen if path == "/test.Echo/Unary"]
    xff = {h.get("x-forwarded-for") for h in seen}
    checks.check(xff == {f"{CLIENT}, 127.0.0.1"}, f"{label} grpc-web: replicas see X-Forwarded-For '{CLIENT}, 127.0.0.1'", repr(xff))
    checks.check(all("forwarded" not in h for h in seen), f"{label} grpc-web: the client's Forwarded header is dropped")
    checks.check(answers == {r.name for r in replicas}, f"{label} grpc-web: calls are spread over both replicas", repr(answers))

    # CORS preflight and a replica's HTTP error pass untouched.
    status, got, _ = web_call(port, "/test.Echo/Unary", tls, method="OPTIONS", headers={
        "origin": "http://localhost:5173",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,authorization",
    })
    preflights = [h for r in replicas for (m, _, h, _) in r.seen if m == "OPTIONS"]
    checks.check(
        status == 204 and got.get("access-control-allow-origin") == "http://localhost:5173"
        and got.get("access-control-allow-headers") == "content-type,x-grpc-web,authorization"
        and len(preflights) == 1,
        f"{label} grpc-web: a CORS preflight reaches a replica and its answer comes back",
        f"status={status} headers={got!r} preflights={preflights!r}",
    )
    status, got, pieces = web_call(port, "/test.Echo/Unary", tls, b"{}", headers={"content-type": "text/plain"})
    checks.check(
        status == 415 and b"".join(p for _, p in pieces) == b"not grpc-web\n",
        f"{label} grpc-web: a replica's own HTTP error (415) passes untouched",
        f"status={status} pieces={pieces!r}",
    )

    # Failover.
    replicas[0].stop()
    after = set()
    for _ in range(6):
        status, got, _ = web_call(port, "/test.Echo/Unary", tls, request, headers=headers)
        after.add((status, got.get("x-replica")))
    checks.check(after == {(200, replicas[1].name)}, f"{label} grpc-web: with one replica stopped every call is served", repr(after))
    replicas[1].stop()
    status, got, pieces = web_call(port, "/test.Echo/Unary", tls, request, headers=headers)
    checks.check(
        status == 200 and got.get("grpc-status") == "14"
        and got.get("grpc-message") == f"no {service}-service replica answered"
        and got.get("content-type") == "application/grpc-web+proto" and not pieces,
        f"{label} grpc-web: with no replica nginx answers UNAVAILABLE (trailers-only)",
        f"status={status} headers={got!r} body={pieces!r}",
    )


# --- render.sh on its own -----------------------------------------------------------------


def render_checks(checks: Checks, certs: Path, workdir: Path) -> None:
    good = {"AUTH_UPSTREAMS": "auth-service:50051", "TASK_UPSTREAMS": "task-service:50052"}
    done = render(good, None)
    leftover = re.findall(r"\$\{[A-Z_]+\}", done.stdout)
    checks.check(done.returncode == 0 and not leftover, "render.sh: the defaults render with no placeholder left", done.stderr + repr(leftover))
    checks.check(
        all(f"127.0.0.1:{p}" in done.stdout for p in (8051, 8052, 8151, 8152)),
        "render.sh: default ports 8051/8052 (native gRPC) and 8151/8152 (grpc-web) on 127.0.0.1",
    )
    for what, env, says in [
        ("no AUTH_UPSTREAMS", {"TASK_UPSTREAMS": "task-service:50052"}, "AUTH_UPSTREAMS"),
        ("an upstream without a port", good | {"AUTH_UPSTREAMS": "auth-service"}, "HOST:PORT"),
        ("two servers on one port", good | {"AUTH_WEB_PORT": "8051"}, "four different ports"),
        ("a port past 65535", good | {"TASK_GRPC_PORT": "70000"}, "1 to 65535"),
        ("half a certificate/key pair", good | {"TLS_CERT_FILE": str(certs / "server.pem")}, "TLS_KEY_FILE"),
        ("a CA file that is not there", good | {"UPSTREAM_CA_FILE": str(workdir / "missing.pem")}, "UPSTREAM_CA_FILE"),
        ("a bind address that is a name", good | {"UPSTREAM_BIND": "localhost"}, "UPSTREAM_BIND"),
    ]:
        done = render(env, None)
        checks.check(
            done.returncode == 2 and says in done.stderr and not done.stdout,
            f"render.sh refuses {what}: {done.stderr.strip()}",
            done.stdout[:300],
        )


def main() -> int:
    checks = Checks()
    missing = [tool for tool in ("nginx", "envsubst", "openssl", "curl") if shutil.which(tool) is None]
    try:
        import grpc  # noqa: PLC0415
    except ImportError:
        grpc = None
        missing.append("grpcio (python3 -m pip install grpcio)")
    if not checks.check(not missing, "tools: nginx, envsubst, openssl, curl, grpcio", "missing: " + ", ".join(missing)
                        + "\nDebian: apt-get install nginx-light gettext-base openssl curl"):
        return checks.finish()
    root = os.geteuid() == 0 and shutil.which("setpriv") is not None
    with tempfile.TemporaryDirectory(prefix="nginx-check-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        certs = certificates(workdir)
        if root:
            subprocess.run(["chown", "-R", "nobody:nogroup", str(certs)], check=True)
        render_checks(checks, certs, workdir)
        for tls, swap, unprivileged in [(False, False, False), (False, True, root), (True, False, root), (True, True, False)]:
            run_round(checks, grpc, workdir, certs, tls, swap, unprivileged)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
