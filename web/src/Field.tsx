import type { ComponentProps, ReactNode } from "react";

interface Common {
  id: string;
  label: string;
  error?: string;
}

/** The label, the control and its error message, linked for assistive technology. */
function Labelled({ id, label, error, children }: Common & { children: ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children}
      {error && (
        <p id={`${id}-error`} className="field-error">
          {error}
        </p>
      )}
    </div>
  );
}

/** What marks a control invalid and points it at its error message. */
function errorAttributes(id: string, error?: string) {
  return {
    "aria-invalid": error ? true : undefined,
    "aria-describedby": error ? `${id}-error` : undefined,
  };
}

/** A labelled input with its error message announced and linked (aria-describedby). */
export function Field({ id, label, error, ...input }: Common & ComponentProps<"input">) {
  return (
    <Labelled id={id} label={label} error={error}>
      <input id={id} {...errorAttributes(id, error)} {...input} />
    </Labelled>
  );
}

/** A labelled multi-line field, like [`Field`]. */
export function TextArea({ id, label, error, ...input }: Common & ComponentProps<"textarea">) {
  return (
    <Labelled id={id} label={label} error={error}>
      <textarea id={id} {...errorAttributes(id, error)} {...input} />
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
