import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe } from "./errors";
import { ErrorReason } from "./gen/todo/errors/v1/errors_pb";
import { WatchTasksResponseSchema, type TaskChange, type WatchTasksResponse } from "./gen/todo/task/v1/task_pb";
import type { Session } from "./session";

/**
 * The signed-in user's task changes, live, over ONE WatchTasks stream per browser (per origin
 * and user) however many tabs show the list. In development the services speak HTTP/1.1, where
 * a browser opens about six connections per origin for all its tabs together: a stream per tab
 * would leave none for ordinary calls at the sixth tab.
 *
 * - The tabs of a user ask for the Web Lock `todo.tasks.watch:<user id>`. The one holding it,
 *   the leader, holds the stream and passes every message on over the BroadcastChannel of the
 *   same name. When the leader stops (its tab closes, signs out or leaves the list) the lock
 *   passes to the next tab, which resumes from the last `resume_token` the channel carried.
 * - List, then watch: a tab listens on the channel (`ready()`) before it lists, and applies all
 *   it hears on top of its list (a change the list already reflects, followed by the ones after
 *   it, ends in the same list). The first leader starts from its own list's token; the other
 *   tabs may have listed before it, so it asks them to list again.
 * - When the stream ends: INVALID_TOKEN (the access token expired) → resume at once, the
 *   access token refreshed (by the session's interceptor, or here); RESUME_TOKEN_EXPIRED (the history since the token is gone) → ListTasks for a fresh
 *   token, and every tab lists again; anything else (SHUTTING_DOWN, TOO_MANY_STREAMS, a network
 *   error, a minute without the 20 s heartbeat) → resume after a backoff (`retryDelay`, or
 *   a longer `RetryInfo` delay).
 * - Without Web Locks or BroadcastChannel, each tab holds a stream of its own.
 */

export type WatchStatus = "connecting" | "live" | "reconnecting";

export interface WatchHandlers {
  /** Changes in commit order, from this tab's stream or the leader's. */
  changes(changes: TaskChange[]): void;
  /** Changes since the list was read were lost: list again. */
  resync(): void;
  status(status: WatchStatus): void;
}

export interface WatchOptions {
  /** `navigator.locks` unless given; null: none (this tab watches alone). */
  locks?: Pick<LockManager, "request"> | null;
  /** `retryDelay` unless given. */
  retryDelay?: (failures: number) => number;
}

/** What the tabs of a user tell each other over their channel. */
type Note =
  /** A tab joined: the leader answers with its status. */
  | { kind: "hello" }
  | { kind: "status"; status: WatchStatus; token: string }
  /** A WatchTasksResponse as the leader received it (heartbeats too: they carry the token). */
  | { kind: "response"; bytes: Uint8Array }
  | { kind: "resync"; token: string };

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;
/** Three 20 s heartbeats missed: the connection is gone without having said so. */
const SILENCE_MS = 60_000;

/** The wait after `failures` failed attempts in a row: 0.5 s doubling up to 10 s, each time
 * between half and all of that, so that tabs and browsers do not all come back at once. */
export function retryDelay(failures: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** failures);
  return ceiling * (0.5 + random() / 2);
}

/** One tab's part in watching: `ready()`, list, `start(token)`; `stop()` when the list goes. */
export class TaskWatch {
  private readonly session: Session;
  private readonly handlers: WatchHandlers;
  private readonly locks: Pick<LockManager, "request"> | null;
  private readonly retryDelay: (failures: number) => number;
  private readonly stopping = new AbortController();
  private readonly unlisten: () => void;
  private channel: BroadcastChannel | null = null;
  private lockName = "";
  private subscribed: Promise<void> | null = null;
  private started = false;
  private leading = false;
  /** Where the stream stands: its last token, as heard from the leader or (leading) received. */
  private token: string | null = null;
  /** Where this tab's list was read: the start when it leads without having heard a stream. */
  private listed = "";
  private failures = 0;
  private status: WatchStatus = "connecting";

  constructor(session: Session, handlers: WatchHandlers, options: WatchOptions = {}) {
    this.session = session;
    this.handlers = handlers;
    this.locks = options.locks !== undefined ? options.locks : (globalThis.navigator?.locks ?? null);
    this.retryDelay = options.retryDelay ?? retryDelay;
    // Signing out (or the session ending) stops watching and gives the lock up at once.
    this.unlisten = session.onChange((signedIn) => {
      if (!signedIn) this.stop();
    });
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Resolves once this tab hears what the leader passes on, so that a list read afterwards
   * misses no change. After a failure (the auth-service unreachable), the next call tries again. */
  ready(): Promise<void> {
    this.subscribed ??= this.subscribe().catch((error: unknown) => {
      this.subscribed = null;
      throw error;
    });
    return this.subscribed;
  }

  /** This tab's list was read at `token` (the first page's `resume_token`): watch from now on,
   * as the leader once this tab gets the lock. Later calls only note the newer token. */
  start(token: string): void {
    this.listed = token;
    if (this.started || this.stopped) return;
    this.started = true;
    if (!this.channel || !this.locks) {
      void this.lead();
      return;
    }
    this.locks
      .request(this.lockName, { signal: this.stopping.signal }, () => this.lead())
      .catch(() => undefined); // stopped while waiting for the lock
  }

  /** Stops watching: ends the stream (releasing the lock to the next tab) or the wait for it. */
  stop(): void {
    if (this.stopped) return;
    this.stopping.abort();
    this.unlisten();
    this.channel?.close();
    this.channel = null;
  }

  private async subscribe(): Promise<void> {
    if (!this.locks || typeof BroadcastChannel !== "function") return;
    const user = await this.session.userId();
    if (!user) throw new ConnectError("signed out", Code.Unauthenticated);
    if (this.stopped || this.channel) return;
    this.lockName = `todo.tasks.watch:${user}`;
    this.channel = new BroadcastChannel(this.lockName);
    this.channel.onmessage = (event: MessageEvent<Note>) => this.hear(event.data);
    this.post({ kind: "hello" });
  }

  private post(note: Note): void {
    this.channel?.postMessage(note);
  }

  private show(status: WatchStatus): void {
    if (status === this.status) return;
    this.status = status;
    if (this.leading) this.post({ kind: "status", status, token: this.token ?? "" });
    this.handlers.status(status);
  }

  /** What another tab said: a newcomer's hello (the leader answers it), or the leader's word. */
  private hear(note: Note): void {
    if (note.kind === "hello") {
      if (this.leading) this.post({ kind: "status", status: this.status, token: this.token ?? "" });
      return;
    }
    if (this.leading) return; // a late word of the previous leader's: this stream brings it too
    switch (note.kind) {
      case "status":
        if (note.token) this.token = note.token;
        this.show(note.status);
        break;
      case "response":
        this.received(fromBinary(WatchTasksResponseSchema, note.bytes));
        break;
      case "resync":
        this.token = note.token;
        this.handlers.resync();
        break;
    }
  }

  private received(response: WatchTasksResponse): void {
    if (response.resumeToken) this.token = response.resumeToken;
    this.show("live");
    if (response.changes.length) this.handlers.changes(response.changes);
  }

  /** Holds the stream, resuming it as it ends, until stopped or the session is over. */
  private async lead(): Promise<void> {
    this.leading = true;
    // No stream heard of: start from this tab's list; tabs that listed earlier list again.
    if (this.token === null) {
      this.token = this.listed;
      this.post({ kind: "resync", token: this.token });
    }
    let relist = false;
    while (!this.stopped) {
      let retryAfterMs = 0;
      try {
        if (relist) await this.relist();
        relist = false;
        await this.follow();
      } catch (error) {
        if (this.stopped) break;
        const problem = describe(error);
        retryAfterMs = (problem.retryAfterSeconds ?? 0) * 1000;
        if (problem.reason === ErrorReason.RESUME_TOKEN_EXPIRED || problem.kind === "invalid-argument") {
          relist = true;
        } else if (problem.kind === "token-invalid") {
          // The access token expired. Resume at once: a call refused as it starts is refreshed
          // and retried by the session. One that ends the same way before its first message
          // (the server lets a token within its leeway in, then ends the stream) is renewed
          // here and resumed at once again; after that, back off.
          if (this.failures > 0) {
            const renewed = await this.session.renew().catch(() => null); // null: unreachable
            if (renewed === false) break; // the session is over: the app goes back to sign-in
          }
          if (this.failures < 2) {
            this.failures += 1;
            continue; // at once
          }
        }
      }
      if (this.stopped) break;
      this.show("reconnecting");
      await sleep(Math.max(retryAfterMs, this.retryDelay(this.failures++)), this.stopping.signal);
    }
  }

  /** One WatchTasks call from `this.token`, passing each message on; returns when the stream
   * ends, throws how it failed. */
  private async follow(): Promise<void> {
    const call = new AbortController();
    const abort = () => call.abort();
    this.stopping.signal.addEventListener("abort", abort);
    let silence = setTimeout(abort, SILENCE_MS);
    try {
      const stream = this.session.tasks.watchTasks({ resumeToken: this.token ?? "" }, { signal: call.signal });
      for await (const response of stream) {
        clearTimeout(silence);
        silence = setTimeout(abort, SILENCE_MS);
        this.failures = 0;
        this.received(response);
        this.post({ kind: "response", bytes: toBinary(WatchTasksResponseSchema, response) });
      }
    } finally {
      clearTimeout(silence);
      this.stopping.signal.removeEventListener("abort", abort);
    }
  }

  /** The history since `this.token` is gone: a fresh token, and every tab (this one too) lists
   * again. */
  private async relist(): Promise<void> {
    const page = await this.session.tasks.listTasks({ pageSize: 1 }, { signal: this.stopping.signal });
    this.token = page.resumeToken;
    this.post({ kind: "resync", token: page.resumeToken });
    this.handlers.resync();
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
