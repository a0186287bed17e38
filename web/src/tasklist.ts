import { TaskChange_Kind, type Task, type TaskChange } from "./gen/todo/task/v1/task_pb";

/** Which tasks the dashboard lists. */
export type Filter = "all" | "open" | "done";

/** What the list on screen holds: the filter, and whether every page of it is loaded. */
export interface View {
  filter: Filter;
  /** False while "Load more" would fetch older tasks: one older than the last shown belongs to
   * a page not loaded yet, and is not inserted ahead of it. */
  complete: boolean;
}

export function shows(filter: Filter, task: Task): boolean {
  return filter === "all" || (filter === "done") === task.completed;
}

/** `tasks` with `task` as it now is: replaced where it is shown, inserted where ListTasks would
 * list it (newest first: ids are time-ordered UUIDv7s, the order ListTasks sorts by), or taken
 * out when the filter no longer shows it. */
export function upsert(tasks: Task[], task: Task, view: View): Task[] {
  if (!shows(view.filter, task)) return remove(tasks, task.id);
  const at = tasks.findIndex((shown) => shown.id === task.id);
  if (at >= 0) return tasks.map((shown, i) => (i === at ? task : shown));
  const before = tasks.findIndex((shown) => shown.id < task.id);
  if (before >= 0) return [...tasks.slice(0, before), task, ...tasks.slice(before)];
  return view.complete ? [...tasks, task] : tasks;
}

export function remove(tasks: Task[], id: string): Task[] {
  return tasks.some((shown) => shown.id === id) ? tasks.filter((shown) => shown.id !== id) : tasks;
}

/** `tasks` after `changes` (in commit order). Applying a change the list already reflects, and
 * every change after it, ends at the same list: a list read while changes were arriving is
 * brought up to date by applying them all. */
export function applyChanges(tasks: Task[], changes: readonly TaskChange[], view: View): Task[] {
  return changes.reduce(
    (list, change) =>
      change.kind === TaskChange_Kind.DELETED || !change.task
        ? remove(list, change.taskId)
        : upsert(list, change.task, view),
    tasks,
  );
}

/** Appends a further page, skipping tasks already shown (one that arrived live, say). */
export function appendPage(tasks: Task[], page: readonly Task[]): Task[] {
  const shown = new Set(tasks.map((task) => task.id));
  return [...tasks, ...page.filter((task) => !shown.has(task.id))];
}

/** Whether `a` was written after `b` (their `update_time`s). An answer to this tab's own call
 * can arrive after the stream brought a later change to the same task; that answer is stale. */
export function writtenAfter(a: Task, b: Task): boolean {
  const at = (task: Task) => (task.updateTime ? task.updateTime.seconds * 1_000_000_000n + BigInt(task.updateTime.nanos) : 0n);
  return at(a) > at(b);
}
