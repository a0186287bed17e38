import { useRef, useState, type FormEvent } from "react";
import { Alert, Field } from "./Field";
import { describe, type Problem } from "./errors";
import type { Session } from "./session";

type Mode = "signIn" | "signUp";

/** Sign in, or sign up (which also signs in). */
export function AuthPage({ session, notice }: { session: Session; notice?: string }) {
  const [mode, setMode] = useState<Mode>("signIn");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const form = useRef<HTMLFormElement>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      const answer =
        mode === "signUp"
          ? await session.auth.signUp({ email, password })
          : await session.auth.signIn({ email, password });
      session.start(answer.tokens);
    } catch (error) {
      const found = describe(error);
      setProblem(found);
      // Focus the first field the server complained about.
      const first = Object.keys(found.fields)[0];
      if (first) form.current?.querySelector<HTMLElement>(`#${first}`)?.focus();
    } finally {
      setBusy(false);
    }
  }

  const signingUp = mode === "signUp";
  return (
    <main className="auth">
      <h1>{signingUp ? "Create your account" : "Sign in"}</h1>
      <Alert message={problem?.message ?? notice} />
      <form ref={form} onSubmit={submit} noValidate>
        <Field
          id="email"
          label="Email"
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          error={problem?.fields.email}
        />
        <Field
          id="password"
          label="Password"
          type="password"
          autoComplete={signingUp ? "new-password" : "current-password"}
          required
          minLength={signingUp ? 8 : undefined}
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          error={problem?.fields.password}
        />
        {signingUp && <p className="hint">At least 8 characters.</p>}
        <button type="submit" disabled={busy}>
          {busy ? "Please wait…" : signingUp ? "Sign up" : "Sign in"}
        </button>
      </form>
      <p>
        {signingUp ? "Already have an account? " : "New here? "}
        <button
          type="button"
          className="link"
          onClick={() => {
            setMode(signingUp ? "signIn" : "signUp");
            setProblem(null);
          }}
        >
          {signingUp ? "Sign in" : "Create an account"}
        </button>
      </p>
    </main>
  );
}
