// What the browser tests share: the todo-stack binary, a static server for the built app, and
// starting the pair on fresh SQLite files. (Not a test file: `node --test tests/` runs only
// *.test.mjs.)

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { createReadStream, existsSync, statSync } from "node:fs";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const web = resolve(here, "..");
export const repo = resolve(web, "..");
export const dist = join(web, "dist");
export const PASSWORD = "correct horse battery staple";

/** The todo-stack binary: TODO_STACK_BIN, or the debug build in $CARGO_TARGET_DIR or target/. */
export function stackBinary() {
  const candidates = [
    process.env.TODO_STACK_BIN,
    process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, "debug", "todo-stack"),
    join(repo, "target", "debug", "todo-stack"),
  ].filter(Boolean);
  const found = candidates.find((path) => existsSync(path));
  assert.ok(found, `todo-stack not found (tried ${candidates.join(", ")}): run cargo build -p todo-stack`);
  return found;
}

/** Serves dist/ and a config.json naming the services (over plain HTTP: the app's origin). */
export function serveApp(config) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json" };
  return new Promise((resolveServer) => {
    const http = createServer((request, response) => {
      const path = new URL(request.url, "http://x").pathname;
      if (path === "/config.json") {
        response.writeHead(200, { "content-type": "application/json" });
        return response.end(JSON.stringify(config()));
      }
      let file = join(dist, path === "/" ? "index.html" : path);
      if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) file = join(dist, "index.html");
      response.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
      createReadStream(file).pipe(response);
    });
    http.listen(0, "127.0.0.1", () => resolveServer(http));
  });
}

/** Starts both services on SQLite files in `data`, with `env` added; resolves with their URLs
 * (`scheme` http or https, as the banner prints them) once the banner is printed. */
export function startStack(data, env, scheme = "http") {
  const child = spawn(stackBinary(), [], {
    env: {
      ...process.env,
      AUTH_LISTEN_ADDR: "127.0.0.1:0",
      TASK_LISTEN_ADDR: "127.0.0.1:0",
      AUTH_DATABASE_URL: `sqlite://${data}/auth.db`,
      TASK_DATABASE_URL: `sqlite://${data}/tasks.db`,
      RUST_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolveStack, reject) => {
    let banner = "";
    child.on("exit", (code) => reject(new Error(`todo-stack exited early (${code})`)));
    child.stdout.on("data", (chunk) => {
      banner += chunk;
      const auth = banner.match(new RegExp(`auth-service {2}(${scheme}://\\S+)`));
      const task = banner.match(new RegExp(`task-service {2}(${scheme}://\\S+)`));
      if (auth && task && banner.includes("Ctrl-C stops both")) {
        resolveStack({ child, authUrl: auth[1], taskUrl: task[1] });
      }
    });
  });
}
