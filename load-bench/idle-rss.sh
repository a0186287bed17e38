#!/usr/bin/env bash
# Idle RSS of the two service binaries, each in its own process, as deployed: build them
# first (`cargo build --release -p auth-service -p task-service`). Uses ports 50151/50152
# and SQLite files in a temporary directory; stops both services afterwards.
set -euo pipefail
T=${CARGO_TARGET_DIR:-$HOME/.cache/todo-grpc/target}/release
D=$(mktemp -d)
export RUST_LOG=warn
AUTH_LISTEN_ADDR=127.0.0.1:50151 AUTH_DATABASE_URL=sqlite://$D/auth.db "$T/auth-service" & A=$!
sleep 2
TASK_LISTEN_ADDR=127.0.0.1:50152 TASK_DATABASE_URL=sqlite://$D/tasks.db AUTH_SERVICE_URL=http://127.0.0.1:50151 "$T/task-service" & K=$!
sleep 5
for p in "auth-service $A" "task-service $K"; do
  set -- $p
  printf '%s: %s\n' "$1" "$(grep -E 'VmRSS|VmHWM' /proc/$2/status | tr -s ' \n' ' ')"
done
kill -TERM $K $A; wait $K $A 2>/dev/null || true
rm -rf "$D"
