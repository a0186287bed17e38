// End-to-end: the built app in headless Chromium (Debian's, driven by playwright-core)
// against the real auth-service and task-service, started here by the `todo-stack` binary.
//
// Needs: `npm run build` (dist/), `cargo build -p todo-stack` (TODO_STACK_BIN or
// $CARGO_TARGET_DIR/debug/todo-stack or ../target/debug/todo-stack), and Chromium
// (CHROMIUM_PATH, default /usr/bin/chromium). `npm test` builds dist/ first.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { PASSWORD, dist, repo, serveApp, startStack } from "./harness.mjs";

const artifacts = join(repo, "target", "web-e2e");
const ACCESS_TOKEN_TTL_SECS = 3;
const MAX_REQUEST_BYTES = 8192; // small enough for a description to go over it

let stack, server, browser, origin, data;

/** Polls `check` until it returns truthy (or fails after `ms`). */
async function eventually(check, what, ms = 10_000) {
  const until = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const titles = (page) => page.locator(".tasks .title").allInnerTexts();

/** Waits until the page lists exactly `expected` (a list re-renders while it reloads). */
async function expectTitles(page, expected) {
  const same = (shown) => JSON.stringify(shown) === JSON.stringify(expected);
  let shown = [];
  try {
    await eventually(async () => same((shown = await titles(page))), `the titles ${JSON.stringify(expected)}`);
  } finally {
    assert.deepEqual(shown, expected);
  }
}

async function signUp(page, email) {
  await page.goto(origin);
  await page.getByRole("button", { name: "Create an account" }).click();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.getByRole("heading", { name: "My tasks" }).waitFor();
}

async function addTask(page, title, description = "") {
  await page.getByLabel("New task").fill(title);
  await page.getByLabel("Description (optional)").fill(description);
  await page.getByRole("button", { name: "Add task" }).click();
  await page.locator(".tasks .title", { hasText: title }).first().waitFor();
}

async function showOnly(page, filter) {
  await page.getByRole("button", { name: filter, exact: true }).click();
  await eventually(async () => (await page.locator(".status").innerText()) !== "Loading…", "the list");
}

before(async () => {
  assert.ok(existsSync(join(dist, "index.html")), "dist/ is missing: run npm run build");
  let urls = {};
  server = await serveApp(() => urls);
  origin = `http://127.0.0.1:${server.address().port}`;
  data = mkdtempSync(join(tmpdir(), "todo-web-e2e-"));
  stack = await startStack(data, {
    CORS_ALLOWED_ORIGINS: origin,
    ACCESS_TOKEN_TTL_SECS: String(ACCESS_TOKEN_TTL_SECS),
    MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES),
    JWT_LEEWAY_SECS: "0",
  });
  urls = { authUrl: stack.authUrl, taskUrl: stack.taskUrl };
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  stack?.child.removeAllListeners("exit");
  stack?.child.kill("SIGINT");
  server?.close();
  if (data) rmSync(data, { recursive: true, force: true });
});

test("two users manage their own tasks and never see each other's", async () => {
  const ada = await (await browser.newContext()).newPage();
  const bob = await (await browser.newContext()).newPage();
  await signUp(ada, "ada@example.com");
  await signUp(bob, "bob@example.com");
  const empty = "No tasks yet. Add your first one above.";
  await eventually(async () => (await bob.locator(".status").innerText()) === empty, "bob's empty state");

  // A field error from INVALID_ARGUMENT is shown next to its field.
  await ada.getByLabel("New task").fill("   ");
  await ada.getByRole("button", { name: "Add task" }).click();
  const titleError = ada.locator("#new-title-error");
  await titleError.waitFor();
  assert.match(await titleError.innerText(), /required/);
  assert.equal(await ada.getByLabel("New task").getAttribute("aria-invalid"), "true");

  // A request over the size limit (RESOURCE_EXHAUSTED, reason REQUEST_TOO_LARGE) is not
  // mistaken for throttling.
  await ada.getByLabel("New task").fill("Too long");
  await ada.getByLabel("Description (optional)").fill("x".repeat(MAX_REQUEST_BYTES + 100));
  await ada.getByRole("button", { name: "Add task" }).click();
  await ada.getByRole("alert").filter({ hasText: "That is too long to send." }).waitFor();

  await addTask(ada, "Buy milk", "two litres");
  await addTask(ada, "Call mum");
  await addTask(bob, "Bob's secret");

  // Edit a title and description.
  await ada.getByRole("button", { name: "Edit Buy milk" }).click();
  await ada.getByLabel("Title", { exact: true }).fill("Buy oat milk");
  await ada.getByLabel("Description", { exact: true }).fill("one litre");
  await ada.getByRole("button", { name: "Save" }).click();
  await ada.locator(".tasks .title", { hasText: "Buy oat milk" }).waitFor();
  await expectTitles(ada, ["Call mum", "Buy oat milk"]);
  assert.ok((await ada.locator(".tasks").innerText()).includes("one litre"));

  // Complete one and filter.
  await ada.getByLabel("Call mum", { exact: true }).click();
  await eventually(async () => (await ada.locator(".task.done .title").allInnerTexts()).includes("Call mum"), "done");
  await showOnly(ada, "Done");
  await expectTitles(ada, ["Call mum"]);
  await showOnly(ada, "Open");
  await expectTitles(ada, ["Buy oat milk"]);
  await showOnly(ada, "All");
  await expectTitles(ada, ["Call mum", "Buy oat milk"]);

  mkdirSync(artifacts, { recursive: true });
  await ada.screenshot({ path: join(artifacts, "dashboard.png"), fullPage: true });

  // Delete.
  await addTask(ada, "Temporary");
  await ada.getByRole("button", { name: "Delete Temporary" }).click();
  await eventually(async () => !(await titles(ada)).includes("Temporary"), "the deleted task to go");

  // Neither sees the other's tasks, even after reloading.
  await bob.reload();
  await bob.locator(".tasks .title").first().waitFor();
  await expectTitles(bob, ["Bob's secret"]);
  await ada.reload();
  await ada.locator(".tasks .title").first().waitFor();
  await expectTitles(ada, ["Call mum", "Buy oat milk"]);
});

test("an expired access token is refreshed without the user noticing", async () => {
  const page = await (await browser.newContext()).newPage();
  let refreshes = 0;
  page.on("request", (request) => {
    if (request.url().endsWith("/todo.auth.v1.AuthService/Refresh")) refreshes += 1;
  });
  await signUp(page, "cleo@example.com");
  await addTask(page, "Before expiry");
  await page.waitForTimeout((ACCESS_TOKEN_TTL_SECS + 1.5) * 1000);
  await addTask(page, "After expiry");
  assert.ok(refreshes >= 1, "the app refreshed the session");
  assert.equal(await page.getByRole("alert").count(), 0, "no error was shown");
  await expectTitles(page, ["After expiry", "Before expiry"]);
});

test("signing out ends access, and signing back in finds the tasks again", async () => {
  const page = await (await browser.newContext()).newPage();
  await signUp(page, "dan@example.com");
  await addTask(page, "Survives sign-out");
  const revoked = await page.evaluate(() => sessionStorage.getItem("todo.refreshToken"));
  assert.ok(revoked);

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.reload();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();

  // The old refresh token was revoked at the auth-service: putting it back does not help.
  await page.evaluate((token) => sessionStorage.setItem("todo.refreshToken", token), revoked);
  await page.reload();
  await page.getByRole("alert").filter({ hasText: "session has ended" }).waitFor();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();

  // Wrong password: a clear message, still signed out.
  await page.getByLabel("Email").fill("dan@example.com");
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "invalid email or password" }).waitFor();

  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "My tasks" }).waitFor();
  await page.locator(".tasks .title").first().waitFor();
  await expectTitles(page, ["Survives sign-out"]);
});

test("a long list loads a page at a time", async () => {
  const page = await (await browser.newContext()).newPage();
  await signUp(page, "eve@example.com");
  for (let i = 1; i <= 23; i += 1) await addTask(page, `Task ${i}`);
  await page.reload();
  await page.locator(".tasks .title").first().waitFor();
  assert.equal((await titles(page)).length, 20, "the first page");
  await page.getByRole("button", { name: "Load more" }).click();
  await eventually(async () => (await titles(page)).length === 23, "the second page");
  const all = await titles(page);
  assert.equal(new Set(all).size, 23, "no task twice");
  assert.equal(all[0], "Task 23", "newest first");
  assert.equal(await page.getByRole("button", { name: "Load more" }).count(), 0);
});
