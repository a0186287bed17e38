// End-to-end: the account page in headless Chromium against the real services. One user on two
// "devices" (browser contexts, one claiming to be Firefox): the page lists both sessions, signs
// the other out, changes the password (signing other devices out) and the display name. The
// task-service runs with STRICT_SESSIONS=true, so it asks Introspect on every call and a signed-out
// device is refused on its very next action rather than when its access token expires.
//
// Needs what e2e.test.mjs needs (dist/, the todo-stack binary, Chromium).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PASSWORD, audit, eventually, openApp } from "./harness.mjs";

const FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0";
const NEW_PASSWORD = "a much better passphrase";

let app, browser, origin;

before(async () => {
  app = await openApp("todo-web-account-", { STRICT_SESSIONS: "true" });
  ({ browser, origin } = app);
});

after(() => app?.close());

async function device(userAgent) {
  return (await browser.newContext(userAgent ? { userAgent } : {})).newPage();
}

async function signIn(page, email, password) {
  await page.goto(origin);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** The next thing a signed-out device does sends it back to sign-in, saying why. */
async function expectSentBackToSignIn(page) {
  await page.getByLabel("New task").fill("Anyone there?");
  await page.getByRole("button", { name: "Add task" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.getByRole("alert").filter({ hasText: "Your session has ended" }).waitFor();
}

const sessionItems = (page) => page.locator(".sessions > li");

/** Leaves the account page and comes back: the list is asked for again (a reload would too,
 * but would also spend a refresh token). */
async function reopenAccount(page) {
  await page.getByRole("link", { name: "Back to tasks" }).click();
  await page.getByRole("heading", { name: "My tasks" }).waitFor();
  await page.getByRole("link", { name: "Account" }).click();
  await page.getByRole("heading", { name: "Account", level: 1 }).waitFor();
}

async function expectSessionCount(page, count) {
  await eventually(async () => (await sessionItems(page).count()) === count, `${count} session(s) listed`);
}

test("one user on two devices: list, sign out the other, change the password and the name", async () => {
  const email = "hana@example.com";
  const a = await device();
  let refreshes = 0;
  a.on("request", (request) => {
    if (request.url().endsWith("/todo.auth.v1.AuthService/Refresh")) refreshes += 1;
  });

  // Device A signs up; its email is at the top of the dashboard.
  await a.goto(origin);
  await a.getByRole("button", { name: "Create an account" }).click();
  await a.getByLabel("Email").fill(email);
  await a.getByLabel("Password").fill(PASSWORD);
  await a.getByRole("button", { name: "Sign up" }).click();
  await a.getByRole("heading", { name: "My tasks" }).waitFor();
  await a.locator(".topbar").filter({ hasText: `Signed in as ${email}` }).waitFor();

  // Device B (a "Firefox") signs in as the same user.
  const b = await device(FIREFOX);
  await signIn(b, email, PASSWORD);
  await b.getByRole("heading", { name: "My tasks" }).waitFor();

  // A opens the account page from the keyboard: both sessions, A's marked as this device.
  await a.getByRole("link", { name: "Account" }).focus();
  await a.keyboard.press("Enter");
  await a.getByRole("heading", { name: "Account", level: 1 }).waitFor();
  await expectSessionCount(a, 2);
  const mine = sessionItems(a).filter({ hasText: "This device" });
  assert.equal(await mine.count(), 1);
  assert.match(await mine.innerText(), /Chrome on Linux/);
  assert.match(await mine.innerText(), /127\.0\.0\.1/);
  assert.equal(await mine.getByRole("button").count(), 0, "no sign-out button for this device");
  const other = sessionItems(a).filter({ hasNotText: "This device" });
  assert.match(await other.innerText(), /Firefox on Linux/);
  assert.ok((await other.innerText()).includes(FIREFOX), "the raw user agent is shown");
  assert.equal((await a.locator(".sessions").innerText()).match(/\bSigned in\b/g)?.length, 2);
  await audit(a, "the account page with two sessions");

  // The display name: saved, shown at the top, and refused with a field error when invalid.
  await a.getByLabel("Display name").fill("Hana Sato");
  await a.getByRole("button", { name: "Save name" }).click();
  await a.getByRole("status").filter({ hasText: "Display name saved." }).waitFor();
  await a.locator(".topbar").filter({ hasText: `Signed in as Hana Sato (${email})` }).waitFor();
  await a.getByLabel("Display name").fill("Bell\u0007");
  await a.getByRole("button", { name: "Save name" }).click();
  await a.locator("#display_name-error").waitFor();
  assert.equal(await a.getByLabel("Display name").getAttribute("aria-invalid"), "true");
  await a.getByLabel("Display name").fill("x".repeat(101));
  assert.match(await a.locator("#display_name-error").innerText(), /at most 100 characters/);
  await a.reload(); // the header asks GetCurrentUser again
  await a.locator(".topbar").filter({ hasText: "Signed in as Hana Sato" }).waitFor();
  await a.getByRole("heading", { name: "Account", level: 1 }).waitFor();
  assert.equal(await a.getByLabel("Display name").inputValue(), "Hana Sato");

  // A signs B out; B's next action sends it back to sign-in.
  await expectSessionCount(a, 2);
  await sessionItems(a).filter({ hasNotText: "This device" }).getByRole("button", { name: /^Sign out/ }).click();
  await a.getByRole("status").filter({ hasText: "Signed out Firefox on Linux." }).waitFor();
  await expectSessionCount(a, 1);
  await expectSentBackToSignIn(b);

  // B signs in again, and a third device too: "Sign out everywhere else" ends both.
  await signIn(b, email, PASSWORD);
  await b.getByRole("heading", { name: "My tasks" }).waitFor();
  const c = await device();
  await signIn(c, email, PASSWORD);
  await c.getByRole("heading", { name: "My tasks" }).waitFor();
  await reopenAccount(a);
  await expectSessionCount(a, 3);
  await a.getByRole("button", { name: "Sign out everywhere else" }).click();
  await a.getByRole("status").filter({ hasText: "Signed out 2 other sessions." }).waitFor();
  await expectSessionCount(a, 1);
  assert.equal(await a.getByRole("button", { name: "Sign out everywhere else" }).count(), 0);
  await expectSentBackToSignIn(c);
  await signIn(b, email, PASSWORD);
  await b.getByRole("heading", { name: "My tasks" }).waitFor();
  await reopenAccount(a);
  await expectSessionCount(a, 2);

  // A wrong current password is the form's error: A stays signed in, nothing is refreshed.
  const before = refreshes;
  await a.getByLabel("Current password").fill("not my password");
  await a.getByLabel("New password").fill(NEW_PASSWORD);
  await a.getByRole("button", { name: "Change password" }).click();
  const currentError = a.locator("#current_password-error");
  await currentError.waitFor();
  assert.equal(await currentError.innerText(), "That is not your current password.");
  assert.equal(await a.getByLabel("Current password").getAttribute("aria-invalid"), "true");
  assert.equal(refreshes, before, "no token refresh for a wrong current password");
  await a.getByRole("heading", { name: "Account", level: 1 }).waitFor();
  await audit(a, "a wrong current password");

  // A new password the service refuses is shown next to its field.
  await a.getByLabel("Current password").fill(PASSWORD);
  await a.getByLabel("New password").fill("short");
  await a.getByRole("button", { name: "Change password" }).click();
  await a.locator("#new_password-error").waitFor();
  assert.equal(await a.locator("#current_password-error").count(), 0);

  // The change: other devices signed out (the default), and said so.
  assert.ok(await a.getByLabel("Sign out of all other devices").isChecked(), "checked by default");
  await a.getByLabel("New password").fill(NEW_PASSWORD);
  await a.getByRole("button", { name: "Change password" }).click();
  await a.getByRole("status").filter({ hasText: "Password changed. Signed out 1 other device." }).waitFor();
  await expectSessionCount(a, 1);
  assert.equal(await a.getByLabel("Current password").inputValue(), "", "the form is cleared");
  await expectSentBackToSignIn(b);

  // The old password no longer signs in; the new one does.
  await b.getByLabel("Email").fill(email);
  await b.getByLabel("Password").fill(PASSWORD);
  await b.getByRole("button", { name: "Sign in" }).click();
  await b.getByRole("alert").filter({ hasText: "Invalid email or password." }).waitFor();
  await b.getByLabel("Password").fill(NEW_PASSWORD);
  await b.getByRole("button", { name: "Sign in" }).click();
  await b.getByRole("heading", { name: "My tasks" }).waitFor();

  // A is still signed in, and goes back to its tasks.
  await a.getByRole("link", { name: "Back to tasks" }).click();
  await a.getByRole("heading", { name: "My tasks" }).waitFor();
  await a.getByLabel("New task").fill("Still here");
  await a.getByRole("button", { name: "Add task" }).click();
  await a.locator(".tasks .title", { hasText: "Still here" }).waitFor();
});
