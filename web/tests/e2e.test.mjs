// End-to-end: the built app in headless Chromium (Debian's, driven by playwright-core)
// against the real auth-service and task-service, started here by the `todo-stack` binary.
//
// Needs: `npm run build` (dist/), `cargo build -p todo-stack` (TODO_STACK_BIN or
// $CARGO_TARGET_DIR/debug/todo-stack or ../target/debug/todo-stack), and Chromium
// (CHROMIUM_PATH, default /usr/bin/chromium). `npm test` builds dist/ first.
//
// Every page and state a user meets on the way (sign-in, sign-up, the dashboard empty and with
// tasks, a task in edit mode, field and form errors, a failed and a throttled sign-in) is
// audited with axe-core against WCAG 2.0/2.1 A and AA (`audit` in harness.mjs); the account
// page is audited in account.test.mjs.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  PASSWORD,
  audit,
  eventually,
  failOnHttpErrors,
  openApp,
  repo,
} from "./harness.mjs";

const artifacts = join(repo, "target", "web-e2e");
const ACCESS_TOKEN_TTL_SECS = 3;
const MAX_REQUEST_BYTES = 8192; // small enough for a description to go over it
const THROTTLE_DELAY_SECS = 3; // the first sign-in delay after 5 failures: long enough to watch

let app, browser, origin;

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

/** Signs up; with `audited`, audits the sign-in and sign-up pages on the way. */
async function signUp(page, email, { audited = false } = {}) {
  await page.goto(origin);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  if (audited) await audit(page, "the sign-in page");
  await page.getByRole("button", { name: "Create an account" }).click();
  await page.getByRole("heading", { name: "Create your account" }).waitFor();
  if (audited) await audit(page, "the sign-up page");
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
  app = await openApp("todo-web-e2e-", {
    ACCESS_TOKEN_TTL_SECS: String(ACCESS_TOKEN_TTL_SECS),
    MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES),
    JWT_LEEWAY_SECS: "0",
    THROTTLE_BASE_DELAY_SECS: String(THROTTLE_DELAY_SECS),
  });
  ({ browser, origin } = app);
});

after(() => app?.close());

test("two users manage their own tasks and never see each other's", async () => {
  const ada = await (await browser.newContext()).newPage();
  const bob = await (await browser.newContext()).newPage();
  const noFailedRequests = failOnHttpErrors(ada);
  await signUp(ada, "ada@example.com", { audited: true });
  await signUp(bob, "bob@example.com");
  const empty = "No tasks yet. Add your first one above.";
  await eventually(async () => (await bob.locator(".status").innerText()) === empty, "bob's empty state");
  await audit(bob, "the empty dashboard");

  // A field error from INVALID_ARGUMENT is shown next to its field.
  await ada.getByLabel("New task").fill("   ");
  await ada.getByRole("button", { name: "Add task" }).click();
  const titleError = ada.locator("#new-title-error");
  await titleError.waitFor();
  assert.match(await titleError.innerText(), /required/);
  assert.equal(await ada.getByLabel("New task").getAttribute("aria-invalid"), "true");
  await audit(ada, "a field error");

  // A request over the size limit (RESOURCE_EXHAUSTED, reason REQUEST_TOO_LARGE) is not
  // mistaken for throttling.
  await ada.getByLabel("New task").fill("Too long");
  await ada.getByLabel("Description (optional)").fill("x".repeat(MAX_REQUEST_BYTES + 100));
  await ada.getByRole("button", { name: "Add task" }).click();
  await ada.getByRole("alert").filter({ hasText: "That is too long to send." }).waitFor();
  await audit(ada, "a form error");

  await addTask(ada, "Buy milk", "two litres");
  await addTask(ada, "Call mum");
  await addTask(bob, "Bob's secret");

  // Edit a title and description.
  await ada.getByRole("button", { name: "Edit Buy milk" }).click();
  await ada.getByLabel("Title", { exact: true }).waitFor();
  await audit(ada, "a task in edit mode");
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
  await audit(ada, "the dashboard with tasks, one done");

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
  noFailedRequests(); // e.g. no /favicon.ico 404
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
  await audit(page, "a failed sign-in");

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

test("a long title wraps inside its card, and one over the limit is flagged, not cut", async () => {
  const page = await (await browser.newContext({ viewport: { width: 800, height: 900 } })).newPage();
  await signUp(page, "fay@example.com");
  let creates = 0;
  page.on("request", (request) => {
    if (request.url().endsWith("/CreateTask")) creates += 1;
  });

  // A pasted 10,000-character title stays whole, says why it cannot be sent, and is not sent.
  const pasted = "x".repeat(10_000);
  await page.getByLabel("New task").fill(pasted);
  assert.equal((await page.getByLabel("New task").inputValue()).length, 10_000, "nothing was cut");
  const error = page.locator("#new-title-error");
  assert.match(await error.innerText(), /at most 200 characters; this one has 10,000/);
  assert.equal(await page.getByLabel("New task").getAttribute("aria-invalid"), "true");
  await page.getByRole("button", { name: "Add task" }).click();
  assert.equal(creates, 0, "an over-long title is not sent");
  await audit(page, "an over-long title");

  // 200 characters without a space wrap inside the card; Edit and Delete stay in it.
  const long = "W".repeat(200);
  await addTask(page, long);
  assert.equal(await error.count(), 0, "the error went with the long title");
  const card = await page.locator(".task").first().boundingBox();
  for (const name of ["Edit", "Delete"]) {
    const button = await page.getByRole("button", { name: `${name} ${long}` }).boundingBox();
    assert.ok(button.x >= card.x && button.x + button.width <= card.x + card.width + 0.5, `${name} is inside the card`);
  }
  const main = await page.locator("main").boundingBox();
  assert.ok(card.x + card.width <= main.x + main.width, "the card fits the page");

  // Save and Cancel do not touch.
  await page.getByRole("button", { name: `Edit ${long}` }).click();
  const save = await page.getByRole("button", { name: "Save" }).boundingBox();
  const cancel = await page.getByRole("button", { name: "Cancel" }).boundingBox();
  assert.ok(cancel.x - (save.x + save.width) >= 4, "a gap between Save and Cancel");
});

test("a throttled sign-in counts its delay down and holds the button until then", async () => {
  const page = await (await browser.newContext()).newPage();
  await signUp(page, "gil@example.com");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Email").fill("gil@example.com");
  await page.getByLabel("Password").fill("not the password");
  const submit = page.locator("form button[type=submit]");
  const alert = page.getByRole("alert");

  // Five free failures, then the next try within the delay is refused with RetryInfo.
  let tries = 0;
  for (;;) {
    tries += 1;
    await page.getByRole("button", { name: "Sign in" }).click();
    await eventually(async () => (await submit.innerText()) === "Sign in", "the answer");
    if ((await alert.innerText()).startsWith("Too many attempts.")) break;
    assert.match(await alert.innerText(), /Invalid email or password/);
    assert.ok(tries < 8, "throttled after the free attempts");
  }
  const timer = page.getByRole("timer");
  const first = Number(await timer.innerText());
  assert.ok(first >= 1 && first <= THROTTLE_DELAY_SECS, `counts down from ${first}`);
  assert.ok(await submit.isDisabled(), "the button waits");
  await audit(page, "a throttled sign-in");
  if (first > 1) await eventually(async () => Number(await timer.innerText()) < first, "the count to go down", 3000);
  await eventually(() => submit.isEnabled(), "the button to come back", (THROTTLE_DELAY_SECS + 2) * 1000);
  assert.match(await alert.innerText(), /^Too many attempts\. You can try again now\.$/);

  // The wait is over: the right password signs in.
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "My tasks" }).waitFor();
});
