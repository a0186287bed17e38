// End-to-end: the live stream (WatchTasks) ends and is resumed without losing a change: when
// the access token expires (every ACCESS_TOKEN_TTL_SECS here: the app refreshes it and resumes
// at once), and when the services stop and start again on the same addresses (the tabs say
// "Reconnecting…", retry with backoff, and resume from the last token). Two tabs of one browser
// context share the stream; another browser context (a second device) makes the changes.
//
// Needs what e2e.test.mjs needs (dist/, the todo-stack binary, Chromium).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dist, eventually, launchBrowser, openTab, serveApp, startStack } from "./harness.mjs";

const WATCH = "/todo.task.v1.TaskService/WatchTasks";
const ACCESS_TOKEN_TTL_SECS = 3;
const LIVE_MS = 2500;

let server, stack, browser, origin, data, env;

before(async () => {
  assert.ok(existsSync(join(dist, "index.html")), "dist/ is missing: run npm run build");
  let urls = {};
  server = await serveApp(() => urls);
  origin = `http://127.0.0.1:${server.address().port}`;
  data = mkdtempSync(join(tmpdir(), "todo-web-resume-"));
  env = {
    CORS_ALLOWED_ORIGINS: origin,
    // With the default JWT_LEEWAY_SECS (30), as in production: a stream ends when its token
    // expires, but a call carrying that token is still let in for a while (e2e.test.mjs runs
    // with no leeway, where the resumed call is refused as it starts and retried).
    ACCESS_TOKEN_TTL_SECS: String(ACCESS_TOKEN_TTL_SECS),
  };
  stack = await startStack(data, env);
  urls = { authUrl: stack.authUrl, taskUrl: stack.taskUrl };
  // Restarts listen where the first start did, so the open pages find the services again.
  env.AUTH_LISTEN_ADDR = new URL(stack.authUrl).host;
  env.TASK_LISTEN_ADDR = new URL(stack.taskUrl).host;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  stack?.child.removeAllListeners("exit");
  stack?.child.kill("SIGINT");
  server?.close();
  if (data) rmSync(data, { recursive: true, force: true });
});


async function addTask(page, title) {
  await page.getByLabel("New task").fill(title);
  await page.getByRole("button", { name: "Add task" }).click();
  await page.locator(".tasks .title", { hasText: title }).first().waitFor();
}

/** From now on, `window.statuses` lists every live status the page shows. */
async function recordStatuses(page) {
  await page.evaluate(() => {
    const status = document.querySelector(".live");
    window.statuses = [];
    new MutationObserver(() => window.statuses.push(status.textContent)).observe(status, {
      subtree: true,
      childList: true,
      characterData: true,
    });
  });
}

const titles = (page) => page.locator(".tasks .title").allInnerTexts();

async function expectTitles(page, expected, what, ms = LIVE_MS) {
  const same = (shown) => JSON.stringify(shown) === JSON.stringify(expected);
  let shown = [];
  try {
    await eventually(async () => same((shown = await titles(page))), what, ms);
  } finally {
    assert.deepEqual(shown, expected, what);
  }
}

test("an expired access token ends the stream; it resumes after a refresh, losing nothing", async () => {
  const context = await browser.newContext();
  const watches = [];
  let refreshes = 0;
  context.on("request", (request) => {
    if (request.url().endsWith(WATCH)) watches.push(request);
    if (request.url().endsWith("/todo.auth.v1.AuthService/Refresh")) refreshes += 1;
  });
  const tabs = [await openTab(context, origin, "fin@example.com", { signUp: true }), await openTab(context, origin, "fin@example.com")];
  const device = await openTab(await browser.newContext(), origin, "fin@example.com");
  for (const tab of tabs) await recordStatuses(tab);

  // A change every 400 ms for three token lifetimes: some land while the stream is resumed.
  const expected = [];
  const until = Date.now() + 3 * ACCESS_TOKEN_TTL_SECS * 1000;
  for (let i = 1; Date.now() < until; i += 1) {
    await addTask(device, `Change ${i}`);
    expected.unshift(`Change ${i}`);
    await new Promise((r) => setTimeout(r, 400));
  }
  for (const [i, tab] of tabs.entries()) await expectTitles(tab, expected, `every change in tab ${i + 1}`);
  assert.ok(watches.length >= 3, `the stream was resumed (${watches.length} WatchTasks calls)`);
  assert.ok(refreshes >= 2, `the access token was refreshed (${refreshes} times)`);
  for (const tab of tabs) {
    assert.equal(await tab.getByRole("alert").count(), 0, "no error shown");
    assert.deepEqual(await tab.evaluate(() => window.statuses), [], "resumed at once: never Reconnecting…");
    await tab.locator(".live.on").waitFor();
  }
  await context.close();
  await device.context().close();
});

test("services that stop and start again: the tabs reconnect and catch up", async () => {
  const context = await browser.newContext();
  const tabs = [await openTab(context, origin, "gus@example.com", { signUp: true }), await openTab(context, origin, "gus@example.com")];
  await addTask(tabs[0], "Before the restart");
  await expectTitles(tabs[1], ["Before the restart"], "the first change");
  for (const tab of tabs) await recordStatuses(tab);

  stack.child.removeAllListeners("exit"); // the harness's "exited early"
  const exited = new Promise((resolve) => stack.child.once("exit", resolve));
  stack.child.kill("SIGINT");
  await exited;
  for (const tab of tabs) {
    await tab.locator(".live").filter({ hasText: "Reconnecting…" }).waitFor({ timeout: 15_000 });
  }

  stack = await startStack(data, env);
  // A change the tabs cannot have heard of yet: made before they reconnect (or just after).
  const device = await openTab(await browser.newContext(), origin, "gus@example.com");
  await addTask(device, "While they were away");
  for (const [i, tab] of tabs.entries()) {
    await tab.locator(".live.on").waitFor({ timeout: 15_000 });
    await expectTitles(tab, ["While they were away", "Before the restart"], `the missed change in tab ${i + 1}`, 15_000);
  }
  for (const tab of tabs) {
    const shown = await tab.evaluate(() => window.statuses);
    assert.deepEqual([shown[0], shown.at(-1)], ["Updates: Reconnecting…", "Updates: Live"], JSON.stringify(shown));
  }
  await addTask(tabs[1], "After the restart");
  await expectTitles(tabs[0], ["After the restart", "While they were away", "Before the restart"], "live again");
  await context.close();
  await device.context().close();
});
