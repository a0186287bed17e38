// End-to-end: live updates (WatchTasks) in headless Chromium against the real services. The
// tabs of a test are pages of one browser context, so they share what a browser's tabs share:
// Web Locks, BroadcastChannels, and about six HTTP/1.1 connections per origin. Each tab signs in
// for itself (the app keeps its session per tab). Only one tab of a browser holds the stream,
// and passes what it hears to the others; a change must show in every tab within LIVE_MS,
// without a reload.
//
// Needs what e2e.test.mjs needs (dist/, the todo-stack binary, Chromium).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PASSWORD, audit, eventually, openApp, openTab } from "./harness.mjs";

const WATCH = "/todo.task.v1.TaskService/WatchTasks";
const LIVE_MS = 2500;

let app, browser, origin;

before(async () => {
  app = await openApp("todo-web-live-");
  ({ browser, origin } = app);
});

after(() => app?.close());

/** Every WatchTasks request the pages of `context` make, with the page that made it. */
function watchRequests(context) {
  const requests = [];
  context.on("request", (request) => {
    if (request.url().endsWith(WATCH)) requests.push({ request, page: request.frame().page() });
  });
  return requests;
}

/** The resume token a WatchTasks request carries (its one grpc-web frame: a flag byte, the
 * length, then WatchTasksRequest, whose only field is the token): empty means "from now on". */
function resumeTokenLength(request) {
  const body = request.postDataBuffer();
  return body.readUInt32BE(1);
}

const titles = (page) => page.locator(".tasks .title").allInnerTexts();

async function expectTitles(page, expected, what = JSON.stringify(expected)) {
  const same = (shown) => JSON.stringify(shown) === JSON.stringify(expected);
  let shown = [];
  try {
    await eventually(async () => same((shown = await titles(page))), what, LIVE_MS);
  } finally {
    assert.deepEqual(shown, expected, what);
  }
}

async function addTask(page, title) {
  await page.getByLabel("New task").fill(title);
  await page.getByRole("button", { name: "Add task" }).click();
  await page.locator(".tasks .title", { hasText: title }).first().waitFor();
}

async function isDone(page, title) {
  return (await page.locator(".task.done .title").allInnerTexts()).includes(title);
}

async function showOnly(page, filter) {
  await page.getByRole("navigation", { name: "Filter tasks" }).getByRole("button", { name: filter, exact: true }).click();
  await eventually(async () => (await page.locator(".status").innerText()) !== "Loading…", "the list");
}

async function neverReloaded(page) {
  assert.equal(await page.evaluate(() => window.notReloaded), true, "the page was not reloaded");
}

test("a task created, toggled, edited or deleted in one tab shows in the other at once", async () => {
  const context = await browser.newContext();
  const a = await openTab(context, origin, "ada@example.com", { signUp: true });
  const b = await openTab(context, origin, "ada@example.com");
  await audit(b, "the dashboard, live");

  await addTask(a, "Buy milk");
  await expectTitles(b, ["Buy milk"], "the new task in the other tab");
  await addTask(b, "Call mum");
  await expectTitles(a, ["Call mum", "Buy milk"], "newest first");

  await b.getByLabel("Buy milk", { exact: true }).click();
  await eventually(() => isDone(a, "Buy milk"), "the toggle in the other tab", LIVE_MS);

  await a.getByRole("button", { name: "Edit Call mum" }).click();
  await a.getByLabel("Title", { exact: true }).fill("Call dad");
  await a.getByRole("button", { name: "Save" }).click();
  await expectTitles(b, ["Call dad", "Buy milk"], "the edit in the other tab");

  // The other tab's filter holds for what arrives live.
  await showOnly(b, "Open");
  await expectTitles(b, ["Call dad"]);
  await addTask(a, "Water plants");
  await expectTitles(b, ["Water plants", "Call dad"], "a new open task under Open");
  await a.getByLabel("Call dad", { exact: true }).click();
  await expectTitles(b, ["Water plants"], "a task done elsewhere leaves Open");
  await showOnly(b, "All");

  await a.getByRole("button", { name: "Delete Buy milk" }).click();
  await expectTitles(b, ["Water plants", "Call dad"], "the delete in the other tab");
  await expectTitles(a, ["Water plants", "Call dad"]);
  await audit(b, "the dashboard after live changes");
  await neverReloaded(a);
  await neverReloaded(b);
  await context.close();
});

test("seven tabs share one stream: all see a change, and ordinary calls still go through", async () => {
  const context = await browser.newContext();
  const watches = watchRequests(context);
  let open = 0;
  context.on("request", (request) => request.url().endsWith(WATCH) && (open += 1));
  const ended = (request) => request.url().endsWith(WATCH) && (open -= 1);
  context.on("requestfinished", ended);
  context.on("requestfailed", ended);

  const tabs = [await openTab(context, origin, "bea@example.com", { signUp: true })];
  for (let i = 2; i <= 7; i += 1) tabs.push(await openTab(context, origin, "bea@example.com"));
  assert.equal(watches.length, 1, "one WatchTasks stream for seven tabs");
  assert.equal(watches[0].page, tabs[0], "held by the tab that listed first");

  await addTask(tabs[6], "From the seventh tab");
  for (const [i, tab] of tabs.entries()) await expectTitles(tab, ["From the seventh tab"], `tab ${i + 1}`);

  // Every tab's own calls are answered (with a stream per tab they would wait for a connection).
  const expected = ["From the seventh tab"];
  for (const [i, tab] of tabs.entries()) {
    await addTask(tab, `Added in tab ${i + 1}`);
    expected.unshift(`Added in tab ${i + 1}`);
  }
  for (const [i, tab] of tabs.entries()) await expectTitles(tab, expected, `every task in tab ${i + 1}`);
  assert.equal(watches.length, 1, "still one stream");
  assert.equal(open, 1, "one stream open");
  for (const tab of tabs) await neverReloaded(tab);
  await context.close();
});

test("when the tab holding the stream closes, another takes over from where it stood", async () => {
  const context = await browser.newContext();
  const watches = watchRequests(context);
  const [a, b, c] = [
    await openTab(context, origin, "cy@example.com", { signUp: true }),
    await openTab(context, origin, "cy@example.com"),
    await openTab(context, origin, "cy@example.com"),
  ];
  // Another device of the same user (its own browser): its changes reach the tabs via the server.
  const device = await openTab(await browser.newContext(), origin, "cy@example.com");
  await addTask(device, "Before");
  for (const tab of [a, b, c]) await expectTitles(tab, ["Before"]);
  assert.equal(watches.length, 1);
  const leader = watches[0].page;
  const rest = [a, b, c].filter((tab) => tab !== leader);

  // A change made while no tab holds the stream is not lost: the next one resumes from the
  // last token the leader passed on.
  await leader.close();
  await addTask(device, "During the hand-over");
  for (const tab of rest) await expectTitles(tab, ["During the hand-over", "Before"], "the change made meanwhile");
  assert.equal(watches.length, 2, "one new stream");
  assert.ok(rest.includes(watches[1].page), "held by a remaining tab");
  assert.ok(resumeTokenLength(watches[1].request) > 0, "resumed from a token, not from now");

  await addTask(rest[0], "After");
  await expectTitles(rest[1], ["After", "During the hand-over", "Before"]);
  await addTask(device, "From the device");
  for (const tab of rest) await expectTitles(tab, ["From the device", "After", "During the hand-over", "Before"]);
  for (const tab of rest) await neverReloaded(tab);
  await context.close();
  await device.context().close();
});

test("signing out stops watching in that tab and hands the stream on", async () => {
  const context = await browser.newContext();
  const watches = watchRequests(context);
  const a = await openTab(context, origin, "dee@example.com", { signUp: true });
  const b = await openTab(context, origin, "dee@example.com");
  assert.equal(watches.length, 1);
  assert.equal(watches[0].page, a);
  await a.getByRole("button", { name: "Sign out" }).click();
  await a.getByRole("heading", { name: "Sign in" }).waitFor();
  await eventually(() => watches.length === 2, "the other tab to take the stream over", LIVE_MS);
  assert.equal(watches[1].page, b);

  // The signed-out tab hears nothing more, and another user there watches for themselves.
  await addTask(b, "Only for dee");
  await a.getByRole("button", { name: "Create an account" }).click();
  await a.getByLabel("Email").fill("eli@example.com");
  await a.getByLabel("Password").fill(PASSWORD);
  await a.getByRole("button", { name: "Sign up" }).click();
  await a.locator(".live.on").waitFor();
  await eventually(() => watches.length === 3 && watches[2].page === a, "eli's own stream", LIVE_MS);
  await addTask(b, "Still only for dee");
  await addTask(a, "Eli's");
  await expectTitles(b, ["Still only for dee", "Only for dee"]);
  await expectTitles(a, ["Eli's"]);
  await context.close();
});
