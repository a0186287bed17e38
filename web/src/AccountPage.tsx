import { useEffect, useState, type FormEvent } from "react";
import { ChangePassword } from "./ChangePassword";
import { DeleteAccount } from "./DeleteAccount";
import { Alert, Field, Status } from "./Field";
import { describe, sessionProblem, type Problem } from "./errors";
import type { User } from "./gen/todo/auth/v1/auth_pb";
import { DISPLAY_NAME_MAX, tooLong } from "./limits";
import type { Session } from "./session";
import { Sessions } from "./Sessions";

interface Props {
  session: Session;
  user?: User;
  onUser: (user: User) => void;
}

/** The signed-in user's account: their name, where they are signed in, their password, and
 * deleting it. */
export function AccountPage({ session, user, onUser }: Props) {
  // Bumped when a change elsewhere on the page (a password change) signs sessions out.
  const [sessionsChanged, setSessionsChanged] = useState(0);
  return (
    <main className="account">
      <h1 tabIndex={-1}>Account</h1>
      <Profile session={session} user={user} onUser={onUser} />
      <Sessions session={session} changed={sessionsChanged} />
      <ChangePassword
        session={session}
        email={user?.email}
        onSignedOutOthers={() => setSessionsChanged((n) => n + 1)} />
      <DeleteAccount session={session} email={user?.email} />
    </main>
  );
}

/** The display name, changed with UpdateProfile (mask `display_name`); empty clears it. */
function Profile({ session, user, onUser }: Props) {
  const [displayName, setDisplayName] = useState(user?.displayName ?? "");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [saved, setSaved] = useState<string>();
  const [busy, setBusy] = useState(false);

  // The user may arrive after the page (opened at #account), and changes when saved.
  useEffect(() => {
    if (user) setDisplayName(user.displayName);
  }, [user]);

  const nameTooLong = tooLong(displayName, DISPLAY_NAME_MAX, "Display names");

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (nameTooLong) return document.getElementById("display_name")?.focus();
    setBusy(true);
    setProblem(null);
    setSaved(undefined);
    try {
      const answer = await session.account.updateProfile({
        displayName,
        updateMask: { paths: ["display_name"] },
      });
      if (answer.user) onUser(answer.user);
      setSaved(answer.user?.displayName ? "Display name saved." : "Display name removed.");
    } catch (error) {
      const found = describe(error);
      if (!sessionProblem(found)) setProblem(found);
      if (found.fields.display_name) document.getElementById("display_name")?.focus();
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="profile-heading">
      <h2 id="profile-heading">Profile</h2>
      <form onSubmit={submit} noValidate aria-labelledby="profile-heading">
        <p>
          Email: <strong>{user?.email ?? "…"}</strong>
        </p>
        <Field
          id="display_name"
          label="Display name"
          autoComplete="name"
          value={displayName}
          onChange={(e) => {
            setDisplayName(e.target.value);
            setSaved(undefined);
          }}
          hint="Shown instead of your email at the top of the page. Leave empty for none."
          error={nameTooLong ?? problem?.fields.display_name}
        />
        <Alert message={problem && !Object.keys(problem.fields).length ? problem.message : undefined} />
        <Status message={saved} />
        <button type="submit" disabled={busy || !user}>
          Save name
        </button>
      </form>
    </section>
  );
}
