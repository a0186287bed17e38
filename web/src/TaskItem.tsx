import { useState, type FormEvent } from "react";
import { Alert, Field, TextArea } from "./Field";
import { describe, type Problem } from "./errors";
import type { Task } from "./gen/todo/task/v1/task_pb";
import { DESCRIPTION_MAX, TITLE_MAX, tooLong } from "./limits";
import type { Session } from "./session";

interface Props {
  task: Task;
  session: Session;
  onChanged: (task: Task) => void;
  onDeleted: (id: string) => void;
  onError: (error: unknown) => void;
}

/** One task: toggle, edit title/description (conditional on its etag), delete. */
export function TaskItem({ task, session, onChanged, onDeleted, onError }: Props) {
  const [editing, setEditing] = useState(false);
  const [title, setTitle] = useState(task.title);
  const [description, setDescription] = useState(task.description);
  // The version being edited: a change heard live meanwhile must not make the save overwrite it.
  const [editedEtag, setEditedEtag] = useState(task.etag);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  /** After ETAG_MISMATCH (changed elsewhere) or TASK_NOT_FOUND (deleted elsewhere), show the truth. */
  async function resync(error: unknown) {
    const { kind } = describe(error);
    if (kind === "not-found") return onDeleted(task.id);
    if (kind === "etag-mismatch") {
      try {
        onChanged(await session.tasks.getTask({ id: task.id }));
      } catch (again) {
        onError(again);
        return;
      }
    }
    onError(error);
  }

  async function run(action: () => Promise<void>) {
    setBusy(true);
    try {
      await action();
    } finally {
      setBusy(false);
    }
  }

  const toggle = () =>
    run(async () => {
      try {
        onChanged(await session.tasks.toggleTask({ id: task.id }));
      } catch (error) {
        await resync(error);
      }
    });

  const remove = () =>
    run(async () => {
      try {
        await session.tasks.deleteTask({ id: task.id, etag: task.etag });
        onDeleted(task.id);
      } catch (error) {
        await resync(error);
      }
    });

  const titleTooLong = tooLong(title, TITLE_MAX, "Titles");
  const descriptionTooLong = tooLong(description, DESCRIPTION_MAX, "Descriptions");

  const save = (event: FormEvent) => {
    event.preventDefault();
    if (titleTooLong || descriptionTooLong) {
      document.getElementById(`${titleTooLong ? "title" : "description"}-${task.id}`)?.focus();
      return;
    }
    return run(async () => {
      setProblem(null);
      try {
        const updated = await session.tasks.updateTask({
          task: { id: task.id, title, description, etag: editedEtag },
          updateMask: { paths: ["title", "description"] },
        });
        setEditing(false);
        onChanged(updated);
      } catch (error) {
        const found = describe(error);
        // The user can fix these here: keep the form open.
        if (found.kind === "invalid-argument" || found.kind === "request-too-large") setProblem(found);
        else {
          setEditing(false);
          await resync(error);
        }
      }
    });
  };

  if (editing) {
    return (
      <li className="task editing">
        <form onSubmit={save} noValidate aria-label={`Edit ${task.title}`}>
          <Field
            id={`title-${task.id}`}
            label="Title"
            value={title}
            autoFocus
            onChange={(e) => setTitle(e.target.value)}
            error={titleTooLong ?? problem?.fields.title}
          />
          <TextArea
            id={`description-${task.id}`}
            label="Description"
            value={description}
            onChange={(e) => setDescription(e.target.value)}
            error={descriptionTooLong ?? problem?.fields.description}
          />
          <Alert message={problem && !Object.keys(problem.fields).length ? problem.message : undefined} />
          <div className="buttons">
            <button type="submit" disabled={busy}>
              Save
            </button>
            <button
              type="button"
              onClick={() => {
                setEditing(false);
                setProblem(null);
              }}
            >
              Cancel
            </button>
          </div>
        </form>
      </li>
    );
  }

  return (
    <li className={task.completed ? "task done" : "task"}>
      <input
        type="checkbox"
        id={`done-${task.id}`}
        checked={task.completed}
        disabled={busy}
        onChange={() => void toggle()}
      />
      <label htmlFor={`done-${task.id}`} className="title">
        {task.title}
      </label>
      {task.description && <p className="description">{task.description}</p>}
      <div className="actions">
        <button
          type="button"
          aria-label={`Edit ${task.title}`}
          disabled={busy}
          onClick={() => {
            setTitle(task.title);
            setDescription(task.description);
            setEditedEtag(task.etag);
            setEditing(true);
          }}
        >
          Edit
        </button>
        <button type="button" aria-label={`Delete ${task.title}`} disabled={busy} onClick={() => void remove()}>
          Delete
        </button>
      </div>
    </li>
  );
}
