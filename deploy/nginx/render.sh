#!/bin/sh
# Renders nginx.conf.template (beside this script) into the balancer's nginx configuration,
# for docker-compose.replicas.yml and for tests that run nginx directly:
#
#   AUTH_UPSTREAMS='127.0.0.1:50061 127.0.0.1:50071' TASK_UPSTREAMS='127.0.0.1:50062 127.0.0.1:50072' \
#     sh deploy/nginx/render.sh /tmp/lb/nginx.conf
#   nginx -p /tmp/lb/ -c /tmp/lb/nginx.conf -e stderr -g 'pid /tmp/lb/nginx.pid; daemon off;'
#
# Writes to the file named by its one argument (or to standard output with none or `-`).
# Settings, from the environment:
#
#   AUTH_UPSTREAMS, TASK_UPSTREAMS  required: each service's replicas, HOST:PORT separated by
#                                   spaces or commas. A name is resolved when nginx starts, to
#                                   every address it has then (auth-service:50051 in compose
#                                   is both replicas).
#   LISTEN_HOST                     the address nginx listens on (127.0.0.1; compose: 0.0.0.0)
#   AUTH_GRPC_PORT, TASK_GRPC_PORT  native gRPC ports (8051, 8052)
#   AUTH_WEB_PORT, TASK_WEB_PORT    grpc-web ports (8151, 8152)
#   TLS_CERT_FILE, TLS_KEY_FILE     TLS towards clients on all four ports (both or neither;
#                                   unset: plaintext). Over TLS the grpc-web ports speak HTTP/2
#                                   too (ALPN), as browsers prefer.
#   UPSTREAM_CA_FILE                TLS towards the replicas, verified with this CA (unset:
#                                   plaintext, grpc:// and http://)
#   AUTH_TLS_NAME, TASK_TLS_NAME    the name the replicas' certificates are checked against
#                                   (the host of the first AUTH_UPSTREAMS / TASK_UPSTREAMS)
#   UPSTREAM_BIND                   the local address nginx connects to the replicas from,
#                                   e.g. 127.0.0.2 in a test, where TRUSTED_PROXIES=127.0.0.2
#                                   then trusts nginx and not the test's clients (unset: any)
#   ACCESS_LOG                      a file for the access log (relative: under the prefix, -p)
#                                   or `off` (/dev/stdout; a test that runs nginx as a user
#                                   who may not open its standard output needs a file)
#   WORKER_PROCESSES                nginx worker processes (auto)
#   NGINX_BIN                       the nginx whose version decides the HTTP/2 syntax (nginx):
#                                   1.25.1 and later get `http2 on;`, older ones (Debian 12's
#                                   1.22) `listen ... http2`. Without one, the old syntax,
#                                   which newer versions accept with a warning.
#
# Plain POSIX sh and envsubst (gettext-base), both in the nginx images.
set -eu

fail() {
  echo "render.sh: $*" >&2
  exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
template="$here/nginx.conf.template"
out="${1:--}"
[ -r "$template" ] || fail "cannot read $template"
command -v envsubst >/dev/null 2>&1 || fail "envsubst is missing (Debian: apt-get install gettext-base)"

nl='
'

# `server` lines of one upstream group, from a list of HOST:PORT.
servers() {
  name=$1
  list=$(printf '%s' "$2" | tr ',' ' ')
  lines=""
  for addr in $list; do
    port=${addr##*:}
    host=${addr%:*}
    case $port in
      '' | *[!0-9]*) fail "$name: '$addr' is not HOST:PORT (e.g. auth-service:50051 or 127.0.0.1:50051)" ;;
    esac
    [ -n "$host" ] && [ "$host" != "$addr" ] || fail "$name: '$addr' is not HOST:PORT"
    lines="$lines        server $addr max_fails=2 fail_timeout=10s;$nl"
  done
  [ -n "$lines" ] || fail "$name is empty: set it to the replicas' HOST:PORT, e.g. '127.0.0.1:50061 127.0.0.1:50071'"
  printf '%s' "${lines%"$nl"}"
}

# The host of the first HOST:PORT of a list, without IPv6 brackets.
first_host() {
  first=$(printf '%s' "$1" | tr ',' ' ' | awk '{ print $1 }')
  host=${first%:*}
  host=${host#[}
  printf '%s' "${host%]}"
}

port() {
  value=$2
  case $value in
    '' | *[!0-9]*) fail "$1='$value' is not a port number" ;;
  esac
  [ "$value" -ge 1 ] && [ "$value" -le 65535 ] || fail "$1='$value' is not a port from 1 to 65535"
  printf '%s' "$value"
}

[ -n "${AUTH_UPSTREAMS:-}" ] || fail "set AUTH_UPSTREAMS to the auth-service replicas, e.g. 'auth-service:50051' or '127.0.0.1:50061 127.0.0.1:50071'"
[ -n "${TASK_UPSTREAMS:-}" ] || fail "set TASK_UPSTREAMS to the task-service replicas, e.g. 'task-service:50052' or '127.0.0.1:50062 127.0.0.1:50072'"
AUTH_SERVERS=$(servers AUTH_UPSTREAMS "$AUTH_UPSTREAMS")
TASK_SERVERS=$(servers TASK_UPSTREAMS "$TASK_UPSTREAMS")

LISTEN_HOST=${LISTEN_HOST:-127.0.0.1}
AUTH_GRPC_PORT=$(port AUTH_GRPC_PORT "${AUTH_GRPC_PORT:-8051}")
TASK_GRPC_PORT=$(port TASK_GRPC_PORT "${TASK_GRPC_PORT:-8052}")
AUTH_WEB_PORT=$(port AUTH_WEB_PORT "${AUTH_WEB_PORT:-8151}")
TASK_WEB_PORT=$(port TASK_WEB_PORT "${TASK_WEB_PORT:-8152}")
distinct=$(printf '%s\n' "$AUTH_GRPC_PORT" "$TASK_GRPC_PORT" "$AUTH_WEB_PORT" "$TASK_WEB_PORT" | sort -u | wc -l)
[ "$distinct" -eq 4 ] || fail "AUTH_GRPC_PORT, TASK_GRPC_PORT, AUTH_WEB_PORT and TASK_WEB_PORT must be four different ports"

AUTH_TLS_NAME=${AUTH_TLS_NAME:-$(first_host "$AUTH_UPSTREAMS")}
TASK_TLS_NAME=${TASK_TLS_NAME:-$(first_host "$TASK_UPSTREAMS")}
WORKER_PROCESSES=${WORKER_PROCESSES:-auto}

case ${ACCESS_LOG:-/dev/stdout} in
  off) ACCESS_LOG=off ;;
  *) ACCESS_LOG="${ACCESS_LOG:-/dev/stdout} balancer" ;;
esac

# HTTP/2: `http2 on;` from nginx 1.25.1, the `http2` listen parameter before.
new_http2=false
version=""
if command -v "${NGINX_BIN:-nginx}" >/dev/null 2>&1; then
  version=$("${NGINX_BIN:-nginx}" -v 2>&1 | sed -n 's|.*nginx/\([0-9][0-9.]*\).*|\1|p') || version=""
fi
if [ -n "$version" ]; then
  major=$(echo "$version" | cut -d. -f1)
  minor=$(echo "$version" | cut -d. -f2)
  patch=$(echo "$version" | cut -d. -f3)
  if [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && { [ "$minor" -gt 25 ] || { [ "$minor" -eq 25 ] && [ "${patch:-0}" -ge 1 ]; }; }; }; then
    new_http2=true
  fi
fi

# TLS towards clients.
cert=${TLS_CERT_FILE:-}
key=${TLS_KEY_FILE:-}
if [ -n "$cert" ] || [ -n "$key" ]; then
  [ -n "$cert" ] && [ -n "$key" ] || fail "set both TLS_CERT_FILE and TLS_KEY_FILE, or neither (plaintext)"
  [ -r "$cert" ] || fail "TLS_CERT_FILE: cannot read $cert"
  [ -r "$key" ] || fail "TLS_KEY_FILE: cannot read $key"
  SERVER_TLS="    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:client_tls:10m;"
  tls=" ssl"
  web_http2=true
else
  SERVER_TLS="    # (plaintext)"
  tls=""
  web_http2=false
fi
if $new_http2; then
  GRPC_LISTEN="$tls"
  GRPC_HTTP2="        http2 on;"
  WEB_LISTEN="$tls"
  if $web_http2; then WEB_HTTP2="        http2 on;"; else WEB_HTTP2=""; fi
else
  GRPC_LISTEN="$tls http2"
  GRPC_HTTP2=""
  if $web_http2; then WEB_LISTEN="$tls http2"; else WEB_LISTEN="$tls"; fi
  WEB_HTTP2=""
fi

# TLS towards the replicas.
ca=${UPSTREAM_CA_FILE:-}
if [ -n "$ca" ]; then
  [ -r "$ca" ] || fail "UPSTREAM_CA_FILE: cannot read $ca"
  UPSTREAM_GRPC_SCHEME=grpcs
  UPSTREAM_HTTP_SCHEME=https
  UPSTREAM_TLS="    grpc_ssl_trusted_certificate $ca;
    grpc_ssl_verify on;
    grpc_ssl_verify_depth 2;
    grpc_ssl_server_name on;
    grpc_ssl_protocols TLSv1.2 TLSv1.3;
    proxy_ssl_trusted_certificate $ca;
    proxy_ssl_verify on;
    proxy_ssl_verify_depth 2;
    proxy_ssl_server_name on;
    proxy_ssl_protocols TLSv1.2 TLSv1.3;"
else
  UPSTREAM_GRPC_SCHEME=grpc
  UPSTREAM_HTTP_SCHEME=http
  UPSTREAM_TLS="    # (plaintext)"
fi

bind=${UPSTREAM_BIND:-}
if [ -n "$bind" ]; then
  case $bind in
    *[!0-9A-Fa-f.:]*) fail "UPSTREAM_BIND='$bind' is not an IP address (e.g. 127.0.0.2)" ;;
  esac
  UPSTREAM_BIND="    grpc_bind $bind;
    proxy_bind $bind;"
else
  UPSTREAM_BIND="    # (any)"
fi

export AUTH_SERVERS TASK_SERVERS LISTEN_HOST AUTH_GRPC_PORT TASK_GRPC_PORT AUTH_WEB_PORT \
  TASK_WEB_PORT AUTH_TLS_NAME TASK_TLS_NAME WORKER_PROCESSES ACCESS_LOG SERVER_TLS \
  UPSTREAM_TLS UPSTREAM_GRPC_SCHEME UPSTREAM_HTTP_SCHEME GRPC_LISTEN GRPC_HTTP2 WEB_LISTEN \
  WEB_HTTP2 UPSTREAM_BIND
# Only these names: nginx's own $variables stay as they are.
names='${AUTH_SERVERS} ${TASK_SERVERS} ${LISTEN_HOST} ${AUTH_GRPC_PORT} ${TASK_GRPC_PORT}
${AUTH_WEB_PORT} ${TASK_WEB_PORT} ${AUTH_TLS_NAME} ${TASK_TLS_NAME} ${WORKER_PROCESSES}
${ACCESS_LOG} ${SERVER_TLS} ${UPSTREAM_TLS} ${UPSTREAM_GRPC_SCHEME} ${UPSTREAM_HTTP_SCHEME}
${GRPC_LISTEN} ${GRPC_HTTP2} ${WEB_LISTEN} ${WEB_HTTP2} ${UPSTREAM_BIND}'

if [ "$out" = "-" ]; then
  envsubst "$names" <"$template"
else
  mkdir -p "$(dirname "$out")"
  envsubst "$names" <"$template" >"$out.tmp"
  mv "$out.tmp" "$out"
fi
