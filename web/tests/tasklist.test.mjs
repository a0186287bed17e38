// Unit: src/tasklist.ts applies the task changes WatchTasks streams to the list on screen: in
// ListTasks' order (newest first), within the filter, and without inserting a task that belongs
// to a page not loaded yet. Vite compiles it for Node, as errors.test.mjs does errors.ts.

import { before, test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { compileForNode } from "./harness.mjs";

let list, TaskSchema, TaskChangeSchema, Kind;

before(async () => {
  const modules = await compileForNode("tasklist-test", { tasklist: "src/tasklist.ts", task_pb: "src/gen/todo/task/v1/task_pb.ts" });
  list = modules.tasklist;
  const pb = modules.task_pb;
  ({ TaskSchema, TaskChangeSchema } = pb);
  Kind = pb.TaskChange_Kind;
});

/** A task whose id sorts by `n` (UUIDv7s sort by creation time, as these do by n). */
function task(n, { completed = false, title = `Task ${n}`, updated = n } = {}) {
  return create(TaskSchema, {
    id: `0190${String(n).padStart(4, "0")}-0000-7000-8000-000000000000`,
    title,
    completed,
    updateTime: { seconds: BigInt(updated), nanos: 0 },
  });
}

const created = (t) => create(TaskChangeSchema, { kind: Kind.CREATED, task: t, taskId: t.id });
const updated = (t) => create(TaskChangeSchema, { kind: Kind.UPDATED, task: t, taskId: t.id });
const deleted = (t) => create(TaskChangeSchema, { kind: Kind.DELETED, taskId: t.id });
const titles = (tasks) => tasks.map((t) => t.title);
const ALL = { filter: "all", complete: true };

test("a created task goes where ListTasks would list it: newest first", () => {
  const shown = [task(5), task(3), task(1)];
  assert.deepEqual(titles(list.applyChanges(shown, [created(task(6))], ALL)), ["Task 6", "Task 5", "Task 3", "Task 1"]);
  assert.deepEqual(titles(list.applyChanges(shown, [created(task(4))], ALL)), ["Task 5", "Task 4", "Task 3", "Task 1"]);
  assert.deepEqual(titles(list.applyChanges([], [created(task(1)), created(task(2))], ALL)), ["Task 2", "Task 1"]);
});

test("an update replaces the task in place; a delete takes it out; unknown ids change nothing", () => {
  const shown = [task(3), task(2), task(1)];
  const renamed = list.applyChanges(shown, [updated(task(2, { title: "Renamed", updated: 9 }))], ALL);
  assert.deepEqual(titles(renamed), ["Task 3", "Renamed", "Task 1"]);
  assert.deepEqual(titles(list.applyChanges(shown, [deleted(task(2))], ALL)), ["Task 3", "Task 1"]);
  assert.equal(list.applyChanges(shown, [deleted(task(7))], ALL), shown, "the same list, not a copy");
});

test("the filter decides: a task toggled out of it leaves, one toggled into it comes in", () => {
  const open = { filter: "open", complete: true };
  const shown = [task(3), task(1)];
  const done = list.applyChanges(shown, [updated(task(3, { completed: true }))], open);
  assert.deepEqual(titles(done), ["Task 1"]);
  const reopened = list.applyChanges(done, [updated(task(2))], open);
  assert.deepEqual(titles(reopened), ["Task 2", "Task 1"]);
  assert.deepEqual(titles(list.applyChanges(shown, [created(task(4, { completed: true }))], open)), ["Task 3", "Task 1"]);
  const doneView = { filter: "done", complete: true };
  assert.deepEqual(titles(list.applyChanges([], [created(task(4, { completed: true }))], doneView)), ["Task 4"]);
});

test("while older pages are not loaded, an older task waits for its page", () => {
  const partial = { filter: "all", complete: false };
  const shown = [task(9), task(8), task(7)];
  assert.equal(list.applyChanges(shown, [updated(task(2))], partial), shown, "task 2 is on a later page");
  assert.deepEqual(titles(list.applyChanges(shown, [created(task(10))], partial)), ["Task 10", "Task 9", "Task 8", "Task 7"]);
  // The oldest task shown is still replaced where it is.
  const last = list.applyChanges(shown, [updated(task(7, { title: "Last", updated: 20 }))], partial);
  assert.deepEqual(titles(last), ["Task 9", "Task 8", "Last"]);
  // And a further page does not repeat a task that arrived live.
  assert.deepEqual(titles(list.appendPage([task(9), task(8)], [task(8), task(7)])), ["Task 9", "Task 8", "Task 7"]);
});

test("replaying changes a list already reflects, then the later ones, ends where the log does", () => {
  const log = [
    created(task(1)),
    created(task(2)),
    updated(task(1, { completed: true, updated: 10 })),
    deleted(task(2)),
    created(task(3)),
    updated(task(3, { title: "Renamed", updated: 11 })),
    updated(task(1, { completed: false, updated: 12 })),
  ];
  for (const filter of ["all", "open", "done"]) {
    const view = { filter, complete: true };
    const truth = list.applyChanges([], log, view);
    for (let read = 0; read <= log.length; read += 1) {
      // The list was read after `read` changes; the tab heard from change `heardFrom` on.
      const snapshot = list.applyChanges([], log.slice(0, read), view);
      for (let heardFrom = 0; heardFrom <= read; heardFrom += 1) {
        const caughtUp = list.applyChanges(snapshot, log.slice(heardFrom), view);
        assert.deepEqual(titles(caughtUp), titles(truth), `${filter}: read at ${read}, heard from ${heardFrom}`);
        assert.deepEqual(caughtUp.map((t) => t.completed), truth.map((t) => t.completed));
      }
    }
  }
});

test("an answer older than what the stream brought is recognised as stale", () => {
  assert.equal(list.writtenAfter(task(1, { updated: 5 }), task(1, { updated: 4 })), true);
  assert.equal(list.writtenAfter(task(1, { updated: 4 }), task(1, { updated: 4 })), false);
  assert.equal(list.writtenAfter(task(1, { updated: 3 }), task(1, { updated: 4 })), false);
});
