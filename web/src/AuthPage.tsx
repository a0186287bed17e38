import { useRef, useState, type FormEvent } from "react";
import { useRetryCountdown } from "./countdown";
import { Field, FormAlert } from "./Field";
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
  const countdown = useRetryCountdown();

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
      countdown.start(found);
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
      <FormAlert problem={problem} secondsLeft={countdown.secondsLeft} message={problem?.message ?? notice} />
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
          hint={signingUp ? "At least 8 characters." : undefined}
        />
        <button type="submit" disabled={busy || countdown.secondsLeft > 0}>
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
            countdown.reset();
          }}
        >
          {signingUp ? "Sign in" : "Create an account"}
        </button>
      </p>
    </main>
  );
}
