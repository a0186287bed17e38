// The built app in headless Chromium against both services over TLS (https:// grpc-web),
// with certificates from `todo-stack dev-certs`: the browser must verify the servers'
// certificate, and every call must go over https.
//
// Chromium trusts the development server key through --ignore-certificate-errors-spki-list
// (the SHA-256 of that one public key): the nearest a headless run gets to importing
// certs/ca.pem into the browser's trust store; any other certificate is still refused.
//
// Needs what e2e.test.mjs needs (dist/, the todo-stack binary, Chromium).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { PASSWORD, dist, serveApp, stackBinary, startStack } from "./harness.mjs";

let stack, server, browser, origin, dir;

/** Base64 SHA-256 of a certificate's public key (SubjectPublicKeyInfo), as Chromium wants it. */
function spkiHash(pemFile) {
  const spki = new X509Certificate(readFileSync(pemFile)).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

before(async () => {
  assert.ok(existsSync(join(dist, "index.html")), "dist/ is missing: run npm run build");
  dir = mkdtempSync(join(tmpdir(), "todo-web-tls-"));
  const certs = join(dir, "certs");
  execFileSync(stackBinary(), ["dev-certs", "--out", certs], { stdio: "ignore" });
  let urls = {};
  server = await serveApp(() => urls);
  origin = `http://127.0.0.1:${server.address().port}`;
  stack = await startStack(
    dir,
    {
      TLS_CERT_FILE: join(certs, "server.pem"),
      TLS_KEY_FILE: join(certs, "server-key.pem"),
      AUTH_SERVICE_CA_FILE: join(certs, "ca.pem"),
      CORS_ALLOWED_ORIGINS: origin,
    },
    "https",
  );
  urls = { authUrl: stack.authUrl, taskUrl: stack.taskUrl };
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      `--ignore-certificate-errors-spki-list=${spkiHash(join(certs, "server.pem"))}`,
    ],
  });
});

after(async () => {
  await browser?.close();
  stack?.child.removeAllListeners("exit");
  stack?.child.kill("SIGINT");
  server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("over https a user signs up and manages tasks, every call on TLS", async () => {
  assert.match(stack.authUrl, /^https:\/\//);
  assert.match(stack.taskUrl, /^https:\/\//);
  const page = await (await browser.newContext()).newPage();
  const calls = [];
  page.on("request", (request) => {
    if (request.url().includes("/todo.")) calls.push(request.url());
  });
  await page.goto(origin);
  await page.getByRole("button", { name: "Create an account" }).click();
  await page.getByLabel("Email").fill("tls@example.com");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.getByRole("heading", { name: "My tasks" }).waitFor();

  await page.getByLabel("New task").fill("Encrypted in transit");
  await page.getByRole("button", { name: "Add task" }).click();
  await page.locator(".tasks .title", { hasText: "Encrypted in transit" }).first().waitFor();
  await page.reload();
  await page.locator(".tasks .title", { hasText: "Encrypted in transit" }).first().waitFor();

  assert.ok(calls.some((url) => url.startsWith(`${stack.authUrl}/todo.auth.v1.AuthService/SignUp`)), calls.join("\n"));
  assert.ok(calls.some((url) => url.startsWith(`${stack.taskUrl}/todo.task.v1.TaskService/`)), calls.join("\n"));
  assert.ok(calls.every((url) => url.startsWith("https://")), calls.join("\n"));
});

test("a server whose certificate the browser was not told to trust is refused", async () => {
  // A second PKI: its server key is not the one Chromium was told to trust.
  const other = join(dir, "other");
  execFileSync(stackBinary(), ["dev-certs", "--out", other], { stdio: "ignore" });
  const page = await (await browser.newContext()).newPage();
  // A one-off TLS server presenting the other certificate: the SPKI flag is no blanket pass.
  const { createServer: createHttps } = await import("node:https");
  const untrusted = createHttps(
    { cert: readFileSync(join(other, "server.pem")), key: readFileSync(join(other, "server-key.pem")) },
    (request, response) => response.end("should not be reached"),
  );
  await new Promise((r) => untrusted.listen(0, "127.0.0.1", r));
  try {
    const url = `https://127.0.0.1:${untrusted.address().port}/`;
    await assert.rejects(page.goto(url), /ERR_CERT/);
  } finally {
    untrusted.close();
  }
});
