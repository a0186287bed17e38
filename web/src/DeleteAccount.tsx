import { useEffect, useRef, useState, type FormEvent } from "react";
import { WRONG_CURRENT } from "./ChangePassword";
import { useRetryCountdown } from "./countdown";
import { Field, FormAlert } from "./Field";
import { describe, sessionProblem, type Problem } from "./errors";
import type { Session } from "./session";

/** What the sign-in page says once the account is gone. */
const DELETED = "Your account has been deleted.";
/** The service's UNAVAILABLE: the database failed, so the deletion most likely did not happen
 * (unless the connection broke just as it was committed). */
const NOT_DELETED =
  "The account could not be deleted just now: the service is unavailable. Please try again in a moment (if signing in fails then, it was deleted).";
/** The password field's id: `current_password` is the password-change form's, on the same page. */
const PASSWORD_ID = "delete_current_password";

/** "Delete account": says what deleting does, and opens the confirmation that does it. */
export function DeleteAccount({ session, email }: { session: Session; email?: string }) {
  const [confirming, setConfirming] = useState(false);
  const opener = useRef<HTMLButtonElement>(null);
  return (
    <section aria-labelledby="delete-heading">
      <h2 id="delete-heading">Delete account</h2>
      <p>
        Deleting your account is permanent: it deletes your account and all of your tasks, and
        signs you out on every device. It cannot be undone.
      </p>
      <button ref={opener} type="button" className="danger-outline" onClick={() => setConfirming(true)}>
        Delete account…
      </button>
      {confirming && (
        <ConfirmDeletion
          session={session}
          email={email}
          onClosed={() => {
            setConfirming(false);
            opener.current?.focus();
          }}
        />
      )}
    </section>
  );
}

/** The confirmation: a modal `<dialog>` (focus stays inside; Escape or Cancel closes it and
 * focus returns to the button that opened it) asking for the current password. DeleteAccount
 * checks it like a sign-in: a wrong one is shown next to the field and the session goes on;
 * a throttled answer counts its RetryInfo down with the button held. On success the
 * auth-service has already ended every session, so the session ends here without SignOut. */
function ConfirmDeletion({
  session,
  email,
  onClosed,
}: {
  session: Session;
  email?: string;
  onClosed: () => void;
}) {
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const countdown = useRetryCountdown();
  const dialog = useRef<HTMLDialogElement>(null);

  // Shown modally once mounted; showModal focuses the first control, the password field.
  useEffect(() => {
    const element = dialog.current;
    if (element && !element.open) element.showModal();
  }, []);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      await session.account.deleteAccount({ currentPassword: password });
      session.ended(DELETED); // the app leaves this page for sign-in
      return;
    } catch (error) {
      const found = describe(error);
      if (sessionProblem(found)) return; // the session went back to sign-in
      if (found.kind === "invalid-credentials") found.fields.current_password = WRONG_CURRENT;
      // UNAVAILABLE from the service itself (with its reason); without one, the browser could
      // not reach it, and the offline message stands.
      if (found.kind === "unavailable" && found.reason !== undefined) found.message = NOT_DELETED;
      setProblem(found);
      countdown.start(found);
      if (found.fields.current_password) document.getElementById(PASSWORD_ID)?.focus();
    } finally {
      setBusy(false);
    }
  }

  const fieldError = problem?.fields.current_password;
  return (
    <dialog
      ref={dialog}
      className="confirm"
      aria-labelledby="delete-dialog-heading"
      aria-describedby="delete-dialog-warning"
      // Escape: closes, unless the deletion is on its way.
      onCancel={(event) => {
        if (busy) event.preventDefault();
      }}
      onClose={onClosed}
    >
      <h2 id="delete-dialog-heading">Delete your account?</h2>
      <p id="delete-dialog-warning">
        This deletes your account and all of your tasks for good, and signs you out everywhere.
        Enter your password to confirm.
      </p>
      <form onSubmit={submit} noValidate aria-labelledby="delete-dialog-heading">
        {/* Tells password managers whose password this is. */}
        <input type="email" name="username" autoComplete="username" value={email ?? ""} readOnly hidden />
        <Field
          id={PASSWORD_ID}
          label="Current password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          error={fieldError}
        />
        <FormAlert
          problem={problem}
          secondsLeft={countdown.secondsLeft}
          message={problem && !fieldError ? problem.message : undefined}
        />
        <div className="buttons">
          <button type="button" disabled={busy} onClick={() => dialog.current?.close()}>
            Cancel
          </button>
          <button type="submit" className="danger" disabled={busy || countdown.secondsLeft > 0}>
            {busy ? "Deleting…" : "Delete my account"}
          </button>
        </div>
      </form>
    </dialog>
  );
}
