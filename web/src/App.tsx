import { useEffect, useState } from "react";
import { AuthPage } from "./AuthPage";
import { Dashboard } from "./Dashboard";
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
      }),
    [session],
  );
  return signedIn ? <Dashboard session={session} /> : <AuthPage session={session} notice={notice} />;
}
