import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { Alert, Field, TextArea } from "./Field";
import { describe, sessionProblem, type Problem } from "./errors";
import type { Task, TaskChange } from "./gen/todo/task/v1/task_pb";
import { DESCRIPTION_MAX, TITLE_MAX, tooLong } from "./limits";
import type { Session } from "./session";
import { TaskItem } from "./TaskItem";
import { appendPage, applyChanges, remove, upsert, writtenAfter, type Filter, type View } from "./tasklist";
import { TaskWatch, type WatchStatus } from "./watch";

const PAGE_SIZE = 20;
const FILTERS: { value: Filter; label: string }[] = [
  { value: "all", label: "All" },
  { value: "open", label: "Open" },
  { value: "done", label: "Done" },
];
const EMPTY: Record<Filter, string> = {
  all: "No tasks yet. Add your first one above.",
  open: "Nothing open. Well done!",
  done: "No completed tasks yet.",
};
const LIVE: Record<WatchStatus, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
};

/** The signed-in user's tasks: create, list a page at a time, filter, and change each; changes
 * made elsewhere (other tabs, other devices) show up as they happen (`watch.ts`). */
export function Dashboard({ session }: { session: Session }) {
  const [filter, setFilter] = useState<Filter>("all");
  const [tasks, setTasks] = useState<Task[]>([]);
  const [nextPageToken, setNextPageToken] = useState("");
  const [loading, setLoading] = useState(true);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [live, setLive] = useState<WatchStatus>("connecting");
  const generation = useRef(0);
  const watch = useRef<TaskWatch | null>(null);
  /** Changes heard while a page loads, applied on top of it when it comes; null when none loads. */
  const pending = useRef<TaskChange[] | null>(null);
  /** What the list shows, for changes heard between renders. */
  const shown = useRef<View>({ filter, complete: true });
  const relist = useRef(() => {});

  useEffect(() => {
    const mine = new TaskWatch(session, {
      changes: (changes) => {
        if (pending.current) pending.current.push(...changes);
        else {
          const view = shown.current;
          setTasks((list) => applyChanges(list, changes, view));
        }
      },
      resync: () => relist.current(),
      status: setLive,
    });
    watch.current = mine;
    return () => {
      mine.stop();
      if (watch.current === mine) watch.current = null;
    };
  }, [session]);

  const load = useCallback(
    async (pageToken: string) => {
      const mine = ++generation.current;
      setLoading(true);
      pending.current = [];
      try {
        await watch.current?.ready(); // listen, then list: no change falls in between
        const page = await session.tasks.listTasks({
          pageSize: PAGE_SIZE,
          pageToken,
          completed: filter === "all" ? undefined : filter === "done",
        });
        if (mine !== generation.current) return; // a newer load (e.g. another filter) won
        const heard = pending.current ?? [];
        const view = { filter, complete: !page.nextPageToken };
        pending.current = null;
        shown.current = view;
        setTasks((list) => applyChanges(pageToken ? appendPage(list, page.tasks) : page.tasks, heard, view));
        setNextPageToken(page.nextPageToken);
        setProblem(null);
        if (!pageToken) watch.current?.start(page.resumeToken);
      } catch (error) {
        if (mine !== generation.current) return;
        // The list stays as it was: bring it up to date with what was heard meanwhile.
        const heard = pending.current ?? [];
        const view = shown.current;
        pending.current = null;
        setTasks((list) => applyChanges(list, heard, view));
        setProblem(describe(error));
      } finally {
        if (mine === generation.current) setLoading(false);
      }
    },
    [session, filter],
  );

  useEffect(() => {
    relist.current = () => void load("");
  }, [load]);

  useEffect(() => {
    setTasks([]);
    setNextPageToken("");
    void load("");
  }, [load]);

  const view: View = { filter, complete: !nextPageToken };
  /** This tab's own change, unless the stream has brought a later one already. */
  const replace = (task: Task) =>
    setTasks((list) => {
      const current = list.find((t) => t.id === task.id);
      return current && writtenAfter(current, task) ? list : upsert(list, task, view);
    });
  const report = (error: unknown) => {
    const found = describe(error);
    if (!sessionProblem(found)) setProblem(found);
  };

  return (
    <main className="dashboard">
      <div className="heading">
        <h1 tabIndex={-1}>My tasks</h1>
        <p role="status" className={live === "live" ? "live on" : "live"}>
          <span className="visually-hidden">Updates: </span>
          {LIVE[live]}
        </p>
      </div>
      <NewTask session={session} onCreated={replace} />
      <nav aria-label="Filter tasks" className="filters">
        {FILTERS.map(({ value, label }) => (
          <button
            key={value}
            type="button"
            aria-pressed={filter === value}
            onClick={() => setFilter(value)}
          >
            {label}
          </button>
        ))}
      </nav>
      <Alert message={problem?.message} />
      <ul className="tasks" aria-label="Tasks" aria-busy={loading}>
        {tasks.map((task) => (
          <TaskItem
            key={task.id}
            task={task}
            session={session}
            onChanged={replace}
            onDeleted={(id) => setTasks((list) => remove(list, id))}
            onError={report}
          />
        ))}
      </ul>
      <p aria-live="polite" className="status">
        {loading ? "Loading…" : tasks.length === 0 && !problem ? EMPTY[filter] : ""}
      </p>
      {nextPageToken && !loading && (
        <button type="button" onClick={() => void load(nextPageToken)}>
          Load more
        </button>
      )}
    </main>
  );
}

function NewTask({ session, onCreated }: { session: Session; onCreated: (task: Task) => void }) {
  const [title, setTitle] = useState("");
  const [description, setDescription] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  // One idempotency key per task being written, so a retried submit cannot make two.
  const requestId = useRef(crypto.randomUUID());
  const titleInput = useRef<HTMLInputElement>(null);

  const titleTooLong = tooLong(title, TITLE_MAX, "Titles");
  const descriptionTooLong = tooLong(description, DESCRIPTION_MAX, "Descriptions");

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (titleTooLong || descriptionTooLong) {
      document.getElementById(titleTooLong ? "new-title" : "new-description")?.focus();
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      const task = await session.tasks.createTask({ title, description, requestId: requestId.current });
      onCreated(task);
      setTitle("");
      setDescription("");
      requestId.current = crypto.randomUUID();
      titleInput.current?.focus();
    } catch (error) {
      const found = describe(error);
      if (!sessionProblem(found)) setProblem(found);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="new-task" onSubmit={submit} noValidate aria-label="Add a task">
      <Field
        ref={titleInput}
        id="new-title"
        label="New task"
        value={title}
        required
        onChange={(e) => setTitle(e.target.value)}
        error={titleTooLong ?? problem?.fields.title}
      />
      <TextArea
        id="new-description"
        label="Description (optional)"
        value={description}
        onChange={(e) => setDescription(e.target.value)}
        error={descriptionTooLong ?? problem?.fields.description}
      />
      <Alert message={problem && !Object.keys(problem.fields).length ? problem.message : undefined} />
      <button type="submit" disabled={busy}>
        {busy ? "Adding…" : "Add task"}
      </button>
    </form>
  );
}
