import { useEffect, useRef, useState } from "react";
import { AccountPage } from "./AccountPage";
import { AuthPage } from "./AuthPage";
import { Dashboard } from "./Dashboard";
import type { User } from "./gen/todo/auth/v1/auth_pb";
import type { Session } from "./session";

/** Sign-in until there is a session, then the dashboard; back to sign-in when it ends. */
export function App({ session }: { session: Session }) {
  const [signedIn, setSignedIn] = useState(session.signedIn);
  const [notice, setNotice] = useState<string>();
  useEffect(
    () =>
      session.onChange((now, reason) => {
        setSignedIn(now);
        setNotice(reason);
        // The next user (or the same, signing in again) starts at their tasks.
        if (!now && location.hash) history.replaceState(null, "", location.pathname + location.search);
      }),
    [session],
  );
  return signedIn ? <SignedIn session={session} /> : <AuthPage session={session} notice={notice} />;
}

type View = "tasks" | "account";

/** The view the address names: `#account` is the account page, anything else the tasks. A
 * hash route, so the browser's back button and a reload keep the page. */
function useView(): View {
  const read = (): View => (location.hash === "#account" ? "account" : "tasks");
  const [view, setView] = useState(read);
  useEffect(() => {
    const update = () => setView(read());
    addEventListener("hashchange", update);
    return () => removeEventListener("hashchange", update);
  }, []);
  return view;
}

/** Who is signed in, with the way to their account and out, above their tasks or account. */
function SignedIn({ session }: { session: Session }) {
  const view = useView();
  const [user, setUser] = useState<User>();
  const shown = useRef(view);

  useEffect(() => {
    let live = true;
    session.account
      .getCurrentUser({})
      .then(({ user }) => live && setUser(user))
      .catch(() => undefined); // the header waits; an ended session goes back to sign-in
    return () => {
      live = false;
    };
  }, [session]);

  // After moving between pages, focus the new page's heading (as a page load would).
  useEffect(() => {
    if (shown.current === view) return;
    shown.current = view;
    document.querySelector<HTMLElement>("main h1")?.focus();
  }, [view]);

  return (
    <>
      <header className="topbar">
        <p className="who">
          {user ? (
            <>
              Signed in as{" "}
              {user.displayName ? (
                <>
                  <strong className="display-name">{user.displayName}</strong>{" "}
                  <span className="email">({user.email})</span>
                </>
              ) : (
                <strong className="email">{user.email}</strong>
              )}
            </>
          ) : (
            "Signed in"
          )}
        </p>
        <nav aria-label="Account">
          {view === "account" ? <a href="#">Back to tasks</a> : <a href="#account">Account</a>}
          <button type="button" onClick={() => void session.signOut()}>
            Sign out
          </button>
        </nav>
      </header>
      {view === "account" ? (
        <AccountPage session={session} user={user} onUser={setUser} />
      ) : (
        <Dashboard session={session} />
      )}
    </>
  );
}
