import type { ComponentProps } from "react";

interface Common {
  id: string;
  label: string;
  error?: string;
}

/** A labelled input with its error message announced and linked (aria-describedby). */
export function Field({ id, label, error, ...input }: Common & ComponentProps<"input">) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${id}-error` : undefined}
        {...input}
      />
      {error && (
        <p id={`${id}-error`} className="field-error">
          {error}
        </p>
      )}
    </div>
  );
}

/** A labelled multi-line field, like [`Field`]. */
export function TextArea({ id, label, error, ...input }: Common & ComponentProps<"textarea">) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <textarea
        id={id}
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${id}-error` : undefined}
        {...input}
      />
      {error && (
        <p id={`${id}-error`} className="field-error">
          {error}
        </p>
      )}
    </div>
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
