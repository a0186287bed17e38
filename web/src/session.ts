import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type StreamRequest,
  type UnaryRequest,
} from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { describe } from "./errors";
import { AuthService, type TokenPair } from "./gen/todo/auth/v1/auth_pb";
import { TaskService } from "./gen/todo/task/v1/task_pb";
import type { Config } from "./config";

/**
 * Where tokens live, and why:
 * - The access token (short-lived JWT) is kept in memory only: it never touches storage, so
 *   nothing persists it beyond the page.
 * - The refresh token is kept in `sessionStorage`: it survives a reload of this tab (so the
 *   user stays signed in) but not closing the tab, and it is not shared with other tabs. The
 *   services return it in the response body (there is no httpOnly cookie to use instead), so
 *   script on this origin can read it either way; a strict Content-Security-Policy on the
 *   static host is the defence against injected script.
 * Every task call, and every account call (`account`: GetCurrentUser, ChangePassword,
 * ListSessions, RevokeSession, RevokeOtherSessions, UpdateProfile, DeleteAccount), carries
 * `authorization: Bearer <access token>`; SignIn, SignUp, Refresh and SignOut go through `auth`,
 * which sends none. When a call is refused with
 * reason INVALID_TOKEN, the session refreshes (one Refresh in flight at a time, shared by every
 * waiting call) and the call is retried once. When Refresh answers INVALID_REFRESH_TOKEN, the
 * session is over and the app goes back to sign-in. (`describe` reads the reason; an
 * UNAUTHENTICATED without `ErrorInfo`, e.g. from a proxy, falls back to "token-invalid".)
 * A stream (WatchTasks) refused as it starts is retried the same way; one that ends with
 * INVALID_TOKEN after it started (the token expired meanwhile) is its caller's to resume, after
 * `renew()`.
 */
const REFRESH_KEY = "todo.refreshToken";
/** The longest RetryInfo delay a refresh waits out, rather than failing the calls waiting on it. */
const MAX_REFRESH_WAIT_SECS = 5;

export type SessionListener = (signedIn: boolean, reason?: string) => void;

export class Session {
  /** SignUp, SignIn (and Refresh, SignOut here): no bearer token. */
  readonly auth: Client<typeof AuthService>;
  /** The signed-in user's own account: with the bearer token, refreshed like `tasks`. A wrong
   * current password in ChangePassword or DeleteAccount is INVALID_CREDENTIALS, not
   * INVALID_TOKEN: it is the form's to show, and neither refreshes nor ends the session. */
  readonly account: Client<typeof AuthService>;
  readonly tasks: Client<typeof TaskService>;
  private accessToken: string | null = null;
  private refreshing: Promise<string | null> | null = null;
  private listeners = new Set<SessionListener>();

  constructor(config: Config) {
    this.auth = createClient(
      AuthService,
      createGrpcWebTransport({ baseUrl: config.authUrl, useBinaryFormat: true }),
    );
    this.account = createClient(
      AuthService,
      createGrpcWebTransport({ baseUrl: config.authUrl, useBinaryFormat: true, interceptors: [this.bearer] }),
    );
    this.tasks = createClient(
      TaskService,
      createGrpcWebTransport({
        baseUrl: config.taskUrl,
        useBinaryFormat: true,
        interceptors: [this.bearer],
      }),
    );
  }

  /** Whether there is a session to use (an access token, or a refresh token to get one). */
  get signedIn(): boolean {
    return this.accessToken !== null || sessionStorage.getItem(REFRESH_KEY) !== null;
  }

  /** The signed-in user's id (the access token's `sub` claim), refreshing first when there is
   * no access token yet (after a reload); null when signed out. */
  async userId(): Promise<string | null> {
    const token = this.accessToken ?? (await this.refresh());
    return token ? subject(token) : null;
  }

  /** Refreshes the access token (joining a Refresh already in flight), for a stream that ended
   * with INVALID_TOKEN: false when the session is over. Throws when the auth-service cannot be
   * reached. */
  async renew(): Promise<boolean> {
    return (await this.refresh()) !== null;
  }

  onChange(listener: SessionListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts a session with the tokens of SignUp / SignIn. */
  start(tokens: TokenPair | undefined): void {
    if (!tokens) throw new Error("the auth-service answered without tokens");
    this.store(tokens);
    this.emit(true);
  }

  /** Ends the session here and at the auth-service (revoking the refresh token). */
  async signOut(): Promise<void> {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    this.clear();
    this.emit(false);
    if (refreshToken) {
      // Best effort: the local session is gone whatever the answer.
      await this.auth.signOut({ refreshToken }).catch(() => undefined);
    }
  }

  /** Ends the session here only, for one the auth-service has already ended (the account was
   * deleted, or the refresh token refused): no SignOut, which could only be refused. The app
   * goes back to sign-in, showing `reason`. */
  ended(reason: string): void {
    this.clear();
    this.emit(false, reason);
  }

  private store(tokens: TokenPair): void {
    this.accessToken = tokens.accessToken;
    sessionStorage.setItem(REFRESH_KEY, tokens.refreshToken);
  }

  private clear(): void {
    this.accessToken = null;
    sessionStorage.removeItem(REFRESH_KEY);
  }

  private emit(signedIn: boolean, reason?: string): void {
    for (const listener of this.listeners) listener(signedIn, reason);
  }

  /** A fresh access token, or null when the session is over. One Refresh at a time. */
  private refresh(): Promise<string | null> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async doRefresh(tries = 3): Promise<string | null> {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return null;
    try {
      const { tokens } = await this.auth.refresh({ refreshToken });
      if (!tokens) return null;
      this.store(tokens);
      return tokens.accessToken;
    } catch (error) {
      const problem = describe(error);
      // Exchanged again too soon (REFRESH_MIN_INTERVAL_MS; e.g. a reload just after a background
      // refresh of the live stream's): wait as told, then try again.
      const wait = problem.kind === "too-many-requests" ? problem.retryAfterSeconds : undefined;
      if (wait !== undefined && wait <= MAX_REFRESH_WAIT_SECS && tries > 1) {
        await new Promise((resolve) => setTimeout(resolve, wait * 1000));
        return this.doRefresh(tries - 1);
      }
      // Refresh refuses with INVALID_REFRESH_TOKEN; any other UNAUTHENTICATED here (e.g. one
      // without ErrorInfo, "token-invalid" by the code fallback) is about the refresh token too.
      if (problem.kind === "refresh-token-invalid" || problem.kind === "token-invalid") {
        this.ended("Your session has ended. Please sign in again.");
        return null;
      }
      throw error; // e.g. the auth-service is unreachable: the session may still be fine
    }
  }

  /** Adds the bearer token; on INVALID_TOKEN refreshes once and retries once. */
  private bearer: Interceptor = (next) => async (sent) => {
    const request = await resendable(sent);
    const token = this.accessToken ?? (await this.refresh());
    if (!token) throw new ConnectError("signed out", Code.Unauthenticated);
    request.header.set("authorization", `Bearer ${token}`);
    try {
      return await next(request);
    } catch (error) {
      if (describe(error).kind !== "token-invalid") throw error;
      // Another call may have refreshed already; otherwise refresh now.
      const fresh =
        this.accessToken !== null && this.accessToken !== token
          ? this.accessToken
          : await this.refresh();
      if (!fresh) throw error;
      request.header.set("authorization", `Bearer ${fresh}`);
      return await next(request);
    }
  };
}

/** `request`, able to be sent twice: a streaming request's message is an iterator the transport
 * reads once. (Only server streaming reaches here: fetch cannot stream a request body.) */
async function resendable<R extends UnaryRequest | StreamRequest>(request: R): Promise<R> {
  if (!request.stream) return request;
  const messages: unknown[] = [];
  for await (const message of request.message) messages.push(message);
  return {
    ...request,
    message: {
      async *[Symbol.asyncIterator]() {
        yield* messages;
      },
    },
  };
}

/** The `sub` claim (the user's id) of a JWT, read without verifying it: the services verify
 * tokens; the app only tells one user's tabs from another's by it. */
function subject(jwt: string): string | null {
  try {
    const base64 = (jwt.split(".")[1] ?? "").replaceAll("-", "+").replaceAll("_", "/");
    const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
    const { sub } = JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown };
    return typeof sub === "string" && sub ? sub : null;
  } catch {
    return null;
  }
}
