import type { ComponentProps, ReactNode } from "react";
import { throttledHeadline, type Problem } from "./errors";

interface Common {
  id: string;
  label: string;
  error?: string;
  /** Shown under the control and linked to it, like the error. */
  hint?: string;
}

/** The label, the control, its hint and its error message, linked for assistive technology. */
function Labelled({ id, label, error, hint, children }: Common & { children: ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children}
      {hint && (
        <p id={`${id}-hint`} className="hint">
          {hint}
        </p>
      )}
      {error && (
        <p id={`${id}-error`} className="field-error">
          {error}
        </p>
      )}
    </div>
  );
}

/** What marks a control invalid and points it at its hint and error message. */
function describedBy(id: string, error?: string, hint?: string) {
  const ids = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(" ");
  return {
    "aria-invalid": error ? true : undefined,
    "aria-describedby": ids || undefined,
  };
}

/** A labelled input with its error message announced and linked (aria-describedby). */
export function Field({ id, label, error, hint, ...input }: Common & ComponentProps<"input">) {
  return (
    <Labelled id={id} label={label} error={error} hint={hint}>
      <input id={id} {...describedBy(id, error, hint)} {...input} />
    </Labelled>
  );
}

/** A labelled multi-line field, like [`Field`]. */
export function TextArea({ id, label, error, hint, ...input }: Common & ComponentProps<"textarea">) {
  return (
    <Labelled id={id} label={label} error={error} hint={hint}>
      <textarea id={id} {...describedBy(id, error, hint)} {...input} />
    </Labelled>
  );
}

/** A message for the whole form or page, read out by screen readers. */
export function Alert({ message }: { message?: string }) {
  return message ? (
    <p role="alert" className="alert">
      {message}
    </p>
  ) : null;
}

/** A form's message for a failed call. A throttled answer counts its `RetryInfo` delay down
 * (`secondsLeft`, from `useRetryCountdown`) in a role="timer", which screen readers read when
 * asked rather than every second; any other shows `message`. */
export function FormAlert({
  problem,
  secondsLeft,
  message,
}: {
  problem?: Problem | null;
  secondsLeft: number;
  message?: string;
}) {
  const headline = throttledHeadline(problem);
  if (!headline) return <Alert message={message} />;
  return (
    <p role="alert" className="alert">
      {headline}{" "}
      {secondsLeft > 0 ? (
        <>
          Try again in <span role="timer">{secondsLeft}</span> s.
        </>
      ) : (
        "You can try again now."
      )}
    </p>
  );
}

/** A message that something worked, read out politely. Always rendered (empty when there is
 * nothing to say), so screen readers know the live region before it speaks. */
export function Status({ message, id }: { message?: string; id?: string }) {
  return (
    <p role="status" id={id} className={message ? "status-ok" : "status-empty"}>
      {message}
    </p>
  );
}
