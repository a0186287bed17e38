import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { Alert, Field, TextArea } from "./Field";
import { describe, sessionProblem, type Problem } from "./errors";
import type { Task } from "./gen/todo/task/v1/task_pb";
import { DESCRIPTION_MAX, TITLE_MAX, tooLong } from "./limits";
import type { Session } from "./session";
import { TaskItem } from "./TaskItem";

type Filter = "all" | "open" | "done";
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

function shows(filter: Filter, task: Task): boolean {
  return filter === "all" || (filter === "done") === task.completed;
}

/** The signed-in user's tasks: create, list a page at a time, filter, and change each. */
export function Dashboard({ session }: { session: Session }) {
  const [filter, setFilter] = useState<Filter>("all");
  const [tasks, setTasks] = useState<Task[]>([]);
  const [nextPageToken, setNextPageToken] = useState("");
  const [loading, setLoading] = useState(true);
  const [problem, setProblem] = useState<Problem | null>(null);
  const generation = useRef(0);

  const load = useCallback(
    async (pageToken: string) => {
      const mine = ++generation.current;
      setLoading(true);
      try {
        const page = await session.tasks.listTasks({
          pageSize: PAGE_SIZE,
          pageToken,
          completed: filter === "all" ? undefined : filter === "done",
        });
        if (mine !== generation.current) return; // a newer load (e.g. another filter) won
        setTasks((shown) => (pageToken ? [...shown, ...page.tasks] : page.tasks));
        setNextPageToken(page.nextPageToken);
        setProblem(null);
      } catch (error) {
        if (mine === generation.current) setProblem(describe(error));
      } finally {
        if (mine === generation.current) setLoading(false);
      }
    },
    [session, filter],
  );

  useEffect(() => {
    setTasks([]);
    setNextPageToken("");
    void load("");
  }, [load]);

  const replace = (task: Task) =>
    setTasks((shown) =>
      shows(filter, task) ? shown.map((t) => (t.id === task.id ? task : t)) : shown.filter((t) => t.id !== task.id),
    );
  const remove = (id: string) => setTasks((shown) => shown.filter((t) => t.id !== id));
  const report = (error: unknown) => {
    const found = describe(error);
    if (!sessionProblem(found)) setProblem(found);
  };

  return (
    <main className="dashboard">
      <h1 tabIndex={-1}>My tasks</h1>
      <NewTask
        session={session}
        onCreated={(task) => {
          if (shows(filter, task)) setTasks((shown) => [task, ...shown.filter((t) => t.id !== task.id)]);
        }}
      />
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
            onDeleted={remove}
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
