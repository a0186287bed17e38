// Unit: src/watch.ts, the one-stream-per-browser watch, against a stand-in WatchTasks (a change
// log whose tokens are positions in it) and an in-process Web Locks stand-in; BroadcastChannel is
// Node's own. Each TaskWatch plays one tab. Vite compiles watch.ts for Node, as errors.test.mjs
// does errors.ts.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { compileForNode } from "./harness.mjs";

let TaskWatch, retryDelay, pb;
const running = new Set();

before(async () => {
  const modules = await compileForNode("watch-test", { watch: "src/watch.ts", task_pb: "src/gen/todo/task/v1/task_pb.ts" });
  ({ TaskWatch, retryDelay } = modules.watch);
  pb = modules.task_pb;
});

after(() => {
  for (const watch of running) watch.stop(); // an open BroadcastChannel keeps Node running
});

function wireError(code, reason) {
  const info = new BinaryWriter().tag(1, 2).string(reason).tag(2, 2).string("todo.task.v1").finish();
  const error = new ConnectError(reason, code);
  error.details = [{ type: "google.rpc.ErrorInfo", value: info }];
  return error;
}

/** WatchTasks over a change log: token `t<n>` stands after the first n changes. */
class FakeTaskService {
  log = [];
  /** The resume token of every WatchTasks call, in order. */
  calls = [];
  lists = 0;
  /** How many calls to refuse, and with what. */
  refusals = { count: 0, error: null };
  /** Tokens before this position are older than the history kept. */
  oldest = 0;
  open = new Set();

  add(title) {
    const id = `task-${this.log.length + 1}`;
    this.log.push(create(pb.TaskChangeSchema, { kind: pb.TaskChange_Kind.CREATED, taskId: id, task: { id, title } }));
    for (const stream of this.open) stream.wake();
  }

  /** Ends every open stream with `error`. */
  end(error) {
    for (const stream of this.open) {
      stream.error = error;
      stream.wake();
    }
  }

  token() {
    return `t${this.log.length}`;
  }

  async *watch(token, signal) {
    this.calls.push(token);
    if (this.refusals.count > 0) {
      this.refusals.count -= 1;
      throw this.refusals.error;
    }
    let at = token ? Number(token.slice(1)) : this.log.length;
    if (at < this.oldest) throw wireError(Code.FailedPrecondition, "RESUME_TOKEN_EXPIRED");
    const stream = { error: null, wake: () => {} };
    this.open.add(stream);
    try {
      for (let first = true; ; first = false) {
        if (first || at < this.log.length) {
          const upTo = this.log.length;
          yield create(pb.WatchTasksResponseSchema, { changes: this.log.slice(at, upTo), resumeToken: `t${upTo}` });
          at = upTo;
          continue;
        }
        await new Promise((wake) => {
          stream.wake = wake;
          signal.addEventListener("abort", wake, { once: true });
        });
        if (signal.aborted) throw new ConnectError("aborted", Code.Canceled);
        if (stream.error) throw stream.error;
      }
    } finally {
      this.open.delete(stream);
    }
  }
}

/** Web Locks in one process: one holder per name, the others wait in order. */
class FakeLocks {
  held = new Map();

  request(name, { signal }, granted) {
    const previous = this.held.get(name) ?? Promise.resolve();
    let release;
    const mine = new Promise((resolve) => (release = resolve));
    this.held.set(name, previous.then(() => mine));
    return new Promise((resolve, reject) => {
      const abort = () => {
        release();
        reject(new DOMException("aborted", "AbortError"));
      };
      signal.addEventListener("abort", abort, { once: true });
      previous.then(async () => {
        signal.removeEventListener("abort", abort);
        if (signal.aborted) return;
        try {
          resolve(await granted());
        } finally {
          release();
        }
      });
    });
  }
}

function fakeSession(service, user = "user-1") {
  const session = {
    renewals: 0,
    onChange: () => () => {},
    userId: async () => user,
    renew: async () => {
      session.renewals += 1;
      return true;
    },
    tasks: {
      watchTasks: (request, { signal }) => service.watch(request.resumeToken, signal),
      listTasks: async () => {
        service.lists += 1;
        return { resumeToken: service.token() };
      },
    },
  };
  return session;
}

/** A tab: its TaskWatch and what it heard. */
function tab(session, locks, retry = () => 20) {
  const heard = { titles: [], statuses: [], resyncs: 0 };
  const watch = new TaskWatch(
    session,
    {
      changes: (changes) => heard.titles.push(...changes.map((change) => change.task.title)),
      resync: () => (heard.resyncs += 1),
      status: (status) => heard.statuses.push(status),
    },
    { locks, retryDelay: retry },
  );
  running.add(watch);
  return { watch, heard };
}

async function until(check, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("one tab streams for all; when it stops, the next resumes from the last token", async () => {
  const service = new FakeTaskService();
  const session = fakeSession(service);
  const locks = new FakeLocks();
  const tabs = [tab(session, locks), tab(session, locks), tab(session, locks)];
  for (const { watch } of tabs) await watch.ready();
  for (const { watch } of tabs) watch.start(service.token());
  await until(() => tabs.every(({ heard }) => heard.statuses.at(-1) === "live"), "every tab live");

  service.add("First");
  await until(() => tabs.every(({ heard }) => heard.titles.includes("First")), "every tab to hear it");
  assert.deepEqual(service.calls, ["t0"], "one stream");
  // The first leader had heard of no stream: the tabs that had listed before it list again.
  assert.deepEqual(tabs.map(({ heard }) => heard.resyncs), [0, 1, 1]);

  tabs[0].watch.stop();
  service.add("Second");
  await until(() => tabs.slice(1).every(({ heard }) => heard.titles.includes("Second")), "the rest to hear it");
  assert.deepEqual(service.calls, ["t0", "t1"], "the next tab resumed where the stream stood");
  assert.deepEqual(tabs[1].heard.titles, ["First", "Second"], "nothing lost or repeated");
  assert.deepEqual(tabs[2].heard.titles, ["First", "Second"]);
  assert.deepEqual(tabs[0].heard.titles, ["First"], "the stopped tab hears no more");
  assert.deepEqual(tabs.map(({ heard }) => heard.resyncs), [0, 1, 1], "a hand-over is no reason to list again");
  for (const { watch } of tabs) watch.stop();
});

test("a tab that joins later hears where the stream stands, and carries on from there", async () => {
  const service = new FakeTaskService();
  const session = fakeSession(service);
  const locks = new FakeLocks();
  const first = tab(session, locks);
  await first.watch.ready();
  first.watch.start(service.token());
  service.add("Before");
  await until(() => first.heard.titles.length === 1, "the leader to hear it");

  const later = tab(session, locks);
  await later.watch.ready();
  await until(() => later.heard.statuses.at(-1) === "live", "the leader's answer");
  later.watch.start(service.token());
  first.watch.stop();
  service.add("After");
  await until(() => later.heard.titles.includes("After"), "the new leader to hear it");
  assert.deepEqual(service.calls, ["t0", "t1"]);
  assert.equal(later.heard.resyncs, 0, "it had heard the token: no need to list again");
  later.watch.stop();
});

test("users do not share: another user's tab watches on its own", async () => {
  const service = new FakeTaskService();
  const locks = new FakeLocks();
  const ada = tab(fakeSession(service, "ada"), locks);
  const bob = tab(fakeSession(service, "bob"), locks);
  for (const { watch } of [ada, bob]) await watch.ready();
  for (const { watch } of [ada, bob]) watch.start(service.token());
  await until(() => service.calls.length === 2, "two streams");
  ada.watch.stop();
  bob.watch.stop();
});

test("an expired access token ends the stream: resumed at once, renewed if the next call is refused too", async () => {
  const service = new FakeTaskService();
  const session = fakeSession(service);
  const solo = tab(session, null, () => 60_000); // a backoff would time the test out
  await solo.watch.ready();
  solo.watch.start(service.token());
  service.add("One");
  await until(() => solo.heard.titles.length === 1, "the first change");

  // The session's interceptor refreshes a call refused as it starts: nothing to do here.
  const expired = wireError(Code.Unauthenticated, "INVALID_TOKEN");
  service.end(expired);
  await until(() => service.calls.length === 2 && service.open.size === 1, "the stream resumed");
  service.add("Two");
  await until(() => solo.heard.titles.length === 2, "the next change");
  assert.equal(session.renewals, 0);

  // A resumed stream ended before its first message (the server let the expired token in within
  // its leeway): renewed here, and resumed at once again.
  service.refusals = { count: 1, error: expired };
  service.end(expired);
  await until(() => service.calls.length === 4 && service.open.size === 1, "the stream resumed again");
  service.add("Three");
  await until(() => solo.heard.titles.length === 3, "the change after that");
  assert.equal(session.renewals, 1);
  assert.deepEqual(service.calls, ["t0", "t1", "t2", "t2"]);
  assert.deepEqual(solo.heard.titles, ["One", "Two", "Three"]);
  assert.deepEqual(solo.heard.statuses, ["live"], "never reconnecting for an expired token");
  solo.watch.stop();
});

test("a server that stops ends the stream: reconnecting, then resumed after a backoff", async () => {
  const service = new FakeTaskService();
  const delays = [];
  const solo = tab(fakeSession(service), null, (failures) => {
    delays.push(failures);
    return 20;
  });
  await solo.watch.ready();
  solo.watch.start(service.token());
  await until(() => solo.heard.statuses.at(-1) === "live", "live");
  service.end(wireError(Code.Unavailable, "SHUTTING_DOWN"));
  service.add("While away");
  await until(() => solo.heard.titles.includes("While away"), "the change made meanwhile");
  assert.deepEqual(solo.heard.statuses, ["live", "reconnecting", "live"]);
  assert.deepEqual(service.calls, ["t0", "t0"]);

  // Failures in a row back off further; a message received starts the count again.
  const tooMany = wireError(Code.ResourceExhausted, "TOO_MANY_STREAMS");
  service.refusals = { count: 2, error: tooMany };
  service.end(tooMany);
  await until(() => service.calls.length === 5 && solo.heard.statuses.at(-1) === "live", "live again");
  assert.deepEqual(delays, [0, 0, 1, 2]);
  assert.deepEqual(solo.heard.statuses, ["live", "reconnecting", "live", "reconnecting", "live"]);
  solo.watch.stop();
});

test("an expired resume token lists again, and so does every tab", async () => {
  const service = new FakeTaskService();
  const session = fakeSession(service);
  const locks = new FakeLocks();
  const [leader, follower] = [tab(session, locks), tab(session, locks)];
  for (const { watch } of [leader, follower]) await watch.ready();
  leader.watch.start(service.token());
  await until(() => follower.heard.statuses.at(-1) === "live", "live");
  follower.watch.start(service.token());
  const resyncs = follower.heard.resyncs;

  service.add("Lost");
  service.add("Lost too");
  await until(() => follower.heard.titles.length === 2, "the changes");
  service.oldest = 5; // history before the 5th change is gone
  service.end(new ConnectError("connection reset", Code.Unavailable));
  await until(() => service.lists === 1, "ListTasks");
  await until(() => leader.heard.resyncs === 1 && follower.heard.resyncs === resyncs + 1, "both tabs to list again");
  assert.deepEqual(service.calls, ["t0", "t2", "t2"], "resumed, refused, then from the new list's token");
  leader.watch.stop();
  follower.watch.stop();
});

test("stopping ends the stream and the wait for the lock", async () => {
  const service = new FakeTaskService();
  const session = fakeSession(service);
  const locks = new FakeLocks();
  const [a, b] = [tab(session, locks), tab(session, locks)];
  for (const { watch } of [a, b]) await watch.ready();
  a.watch.start(service.token());
  b.watch.start(service.token());
  await until(() => service.open.size === 1, "a stream");
  b.watch.stop(); // waiting: it never streams
  a.watch.stop();
  await until(() => service.open.size === 0, "the stream to end");
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(service.calls, ["t0"]);
});

test("the backoff doubles from 0.5 s to 10 s, jittered between half and all of it", () => {
  assert.equal(retryDelay(0, () => 1), 500);
  assert.equal(retryDelay(0, () => 0), 250);
  assert.equal(retryDelay(1, () => 1), 1000);
  assert.equal(retryDelay(4, () => 1), 8000);
  assert.equal(retryDelay(5, () => 1), 10_000);
  assert.equal(retryDelay(50, () => 0), 5000);
});
