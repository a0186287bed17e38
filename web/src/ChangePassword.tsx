import { useRef, useState, type FormEvent } from "react";
import { useRetryCountdown } from "./countdown";
import { Field, FormAlert, Status } from "./Field";
import { describe, sessionProblem, type Problem } from "./errors";
import type { Session } from "./session";

/** What the form says under each field for a wrong current password (INVALID_CREDENTIALS:
 * the form's to show; the session stays signed in and is not refreshed). */
export const WRONG_CURRENT = "That is not your current password.";

function signedOutMessage(count: bigint): string {
  if (count === 0n) return "Password changed. No other device was signed in.";
  return `Password changed. Signed out ${count} other ${count === 1n ? "device" : "devices"}.`;
}

/** ChangePassword: the current password, the new one, and whether to sign out every other
 * device (checked by default, as the service defaults). Throttled like sign-in: a
 * RESOURCE_EXHAUSTED answer counts its RetryInfo down and holds the button. */
export function ChangePassword({
  session,
  email,
  onSignedOutOthers,
}: {
  session: Session;
  email?: string;
  onSignedOutOthers: () => void;
}) {
  const [currentPassword, setCurrentPassword] = useState("");
  const [newPassword, setNewPassword] = useState("");
  const [signOutOthers, setSignOutOthers] = useState(true);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [done, setDone] = useState<string>();
  const [busy, setBusy] = useState(false);
  const countdown = useRetryCountdown();
  const form = useRef<HTMLFormElement>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    setDone(undefined);
    try {
      const { signedOutSessions } = await session.account.changePassword({
        currentPassword,
        newPassword,
        signOutOtherSessions: signOutOthers,
      });
      setCurrentPassword("");
      setNewPassword("");
      setDone(signOutOthers ? signedOutMessage(signedOutSessions) : "Password changed. Other devices stay signed in.");
      if (signedOutSessions > 0n) onSignedOutOthers();
    } catch (error) {
      const found = describe(error);
      if (sessionProblem(found)) return;
      if (found.kind === "invalid-credentials") found.fields.current_password = WRONG_CURRENT;
      setProblem(found);
      countdown.start(found);
      const first = Object.keys(found.fields)[0];
      if (first) form.current?.querySelector<HTMLElement>(`#${first}`)?.focus();
    } finally {
      setBusy(false);
    }
  }

  const hasFieldErrors = problem && Object.keys(problem.fields).length > 0;
  return (
    <section aria-labelledby="password-heading">
      <h2 id="password-heading">Change password</h2>
      <form ref={form} onSubmit={submit} noValidate aria-labelledby="password-heading">
        {/* Tells password managers whose password this is. */}
        <input type="email" name="username" autoComplete="username" value={email ?? ""} readOnly hidden />
        <Field
          id="current_password"
          label="Current password"
          type="password"
          autoComplete="current-password"
          required
          value={currentPassword}
          onChange={(e) => setCurrentPassword(e.target.value)}
          error={problem?.fields.current_password}
        />
        <Field
          id="new_password"
          label="New password"
          type="password"
          autoComplete="new-password"
          required
          value={newPassword}
          onChange={(e) => setNewPassword(e.target.value)}
          hint="At least 8 characters, and not your current password."
          error={problem?.fields.new_password}
        />
        <div className="checkbox">
          <input
            type="checkbox"
            id="sign_out_other_sessions"
            checked={signOutOthers}
            onChange={(e) => setSignOutOthers(e.target.checked)}
          />
          <label htmlFor="sign_out_other_sessions">Sign out of all other devices</label>
        </div>
        <FormAlert
          problem={problem}
          secondsLeft={countdown.secondsLeft}
          message={problem && !hasFieldErrors ? problem.message : undefined}
        />
        <Status message={done} />
        <button type="submit" disabled={busy || countdown.secondsLeft > 0}>
          {busy ? "Changing…" : "Change password"}
        </button>
      </form>
    </section>
  );
}
