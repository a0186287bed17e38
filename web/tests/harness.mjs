// What the browser tests share: the todo-stack binary, a static server for the built app, and
// starting the pair on fresh SQLite files. (Not a test file: `node --test tests/` runs only
// *.test.mjs.)

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

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

/** Serves dist/ and a config.json naming the services (over plain HTTP: the app's origin). A
 * missing file is a 404 (so a test sees the browser asking for one, e.g. /favicon.ico); any
 * other path without an extension is index.html. */
export function serveApp(config) {
  const types = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
  };
  return new Promise((resolveServer) => {
    const http = createServer((request, response) => {
      const path = new URL(request.url, "http://x").pathname;
      if (path === "/config.json") {
        response.writeHead(200, { "content-type": "application/json" });
        return response.end(JSON.stringify(config()));
      }
      let file = join(dist, path === "/" ? "index.html" : path);
      const found = file.startsWith(dist) && existsSync(file) && !statSync(file).isDirectory();
      if (!found && extname(path)) {
        response.writeHead(404, { "content-type": "text/plain" });
        return response.end("not found");
      }
      if (!found) file = join(dist, "index.html");
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

/** Headless Chromium: Debian's, or CHROMIUM_PATH. */
export function launchBrowser(args = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", ...args],
  });
}

/** Polls `check` until it returns truthy (or fails after `ms`). */
export async function eventually(check, what, ms = 10_000) {
  const until = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Fails the test on any response of 400 or more the page gets (grpc-web errors are HTTP 200). */
export function failOnHttpErrors(page) {
  const failed = [];
  page.on("response", (response) => {
    if (response.status() >= 400) failed.push(`${response.status()} ${response.request().method()} ${response.url()}`);
  });
  return () => assert.deepEqual(failed, [], "requests that failed");
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/** One axe violation, readably: the rule, its impact, and each offending element. */
function formatViolation({ id, impact, help, helpUrl, nodes }) {
  const where = nodes.map((node) => `    ${node.target.join(" ")}\n      ${node.failureSummary.replaceAll("\n", "\n      ")}`);
  return `  ${id} (${impact}): ${help}\n  ${helpUrl}\n${where.join("\n")}`;
}

/** Runs axe-core over the page as it is now (WCAG 2.0/2.1 A and AA rules) and fails, listing
 * every violation, unless there is none. `what` names the state in the message. */
export async function audit(page, what) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ content: axeSource });
  const violations = await page.evaluate(
    async (tags) => (await window.axe.run(document, { runOnly: { type: "tag", values: tags } })).violations,
    WCAG,
  );
  assert.ok(violations.length === 0, `axe: ${violations.length} violation(s) on ${what}:\n${violations.map(formatViolation).join("\n")}`);
}

/** The built app served on 127.0.0.1 in front of a fresh todo-stack (SQLite files in a new
 * temporary directory named after `prefix`, `data`, with `env` added and the app's origin
 * allowed by CORS), and headless Chromium. `close()` stops all of it and removes the files. */
export async function openApp(prefix, env = {}) {
  assert.ok(existsSync(join(dist, "index.html")), "dist/ is missing: run npm run build");
  let urls = {};
  const server = await serveApp(() => urls);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const data = mkdtempSync(join(tmpdir(), prefix));
  const stack = await startStack(data, { CORS_ALLOWED_ORIGINS: origin, ...env });
  urls = { authUrl: stack.authUrl, taskUrl: stack.taskUrl };
  const browser = await launchBrowser();
  const close = async () => {
    await browser.close();
    stack.child.removeAllListeners("exit");
    stack.child.kill("SIGINT");
    server.close();
    rmSync(data, { recursive: true, force: true });
  };
  return { origin, stack, browser, data, close };
}

/** Compiles `inputs` (name → path under web/, e.g. `src/errors.ts`) for Node with Vite (their
 * dependencies left as imports of node_modules) and imports each: the unit tests' way to load
 * TypeScript modules of the app. */
export async function compileForNode(name, inputs) {
  const { build } = await import("vite");
  const { pathToFileURL } = await import("node:url");
  const outDir = join(web, "node_modules", ".cache", name);
  await build({
    root: web,
    configFile: false,
    publicDir: false,
    logLevel: "warn",
    build: { ssr: true, outDir, emptyOutDir: true, rollupOptions: { input: inputs } },
  });
  const modules = {};
  for (const key of Object.keys(inputs)) {
    modules[key] = await import(pathToFileURL(join(outDir, `${key}.js`)).href);
  }
  return modules;
}

/** A new tab in `context` at `origin`, signed in (signed up with `signUp`) as `email`, its task
 * list live; `window.notReloaded` is set, so a test can tell the page was never reloaded. */
export async function openTab(context, origin, email, { signUp = false } = {}) {
  const page = await context.newPage();
  await page.goto(origin);
  if (signUp) await page.getByRole("button", { name: "Create an account" }).click();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: signUp ? "Sign up" : "Sign in" }).click();
  await page.getByRole("heading", { name: "My tasks" }).waitFor();
  await page.locator(".live.on").waitFor();
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  return page;
}
