import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb";
import { ErrorReason, ErrorReasonSchema } from "./gen/todo/errors/v1/errors_pb";

/** What kind of failure a call met, whatever the wording. */
export type ProblemKind =
  | "invalid-argument"
  | "email-taken"
  | "invalid-credentials"
  | "token-invalid"
  | "refresh-token-invalid"
  | "too-many-attempts"
  | "too-many-requests"
  | "too-many-unread-replies"
  | "too-many-streams"
  | "not-found"
  | "session-not-found"
  | "etag-mismatch"
  | "unavailable"
  | "request-too-large"
  | "task-quota"
  | "resume-token-expired"
  | "internal";

/** What the UI shows for a failed call: a message, per-field messages (from
 * `google.rpc.BadRequest` field violations) and, when throttled, the `RetryInfo` delay. */
export interface Problem {
  kind: ProblemKind;
  message: string;
  fields: Record<string, string>;
  retryAfterSeconds?: number;
  /** The `google.rpc.ErrorInfo` reason; undefined when the kind came from the status code. */
  reason?: Reason;
}

/** Every reason a service may send (`proto/todo/errors/v1/errors.proto`). */
export type Reason = Exclude<ErrorReason, ErrorReason.ERROR_REASON_UNSPECIFIED>;

/** What a message may depend on besides the reason. */
type Facts = Pick<Problem, "fields" | "retryAfterSeconds"> & { rawMessage: string };

function tryAgain(facts: Facts, otherwise: string): string {
  return facts.retryAfterSeconds ? `Try again in ${facts.retryAfterSeconds} s.` : otherwise;
}

/** What a throttled answer says before its "Try again in N s.", by kind. */
const THROTTLED: Partial<Record<ProblemKind, string>> = {
  "too-many-attempts": "Too many attempts.",
  "too-many-requests": "Too many sign-ins are in progress.",
  "too-many-unread-replies": "The server is still busy sending earlier replies.",
};

/** The kind and message of every reason. Keyed by the generated enum: a reason added to
 * errors.proto without an entry here fails `tsc` (and so `npm run build`). */
const BY_REASON: Record<Reason, { kind: ProblemKind; message: string | ((facts: Facts) => string) }> = {
  [ErrorReason.INVALID_ARGUMENT]: {
    kind: "invalid-argument",
    message: (facts) =>
      Object.keys(facts.fields).length ? "Please correct the highlighted fields." : facts.rawMessage,
  },
  [ErrorReason.INTERNAL]: {
    kind: "internal",
    message: "Something went wrong on the server. Please try again.",
  },
  [ErrorReason.DATABASE_UNAVAILABLE]: {
    kind: "unavailable",
    message: "The service is unavailable right now. Please try again in a moment.",
  },
  [ErrorReason.REQUEST_TOO_LARGE]: { kind: "request-too-large", message: "That is too long to send." },
  [ErrorReason.TOO_MANY_STREAMS]: {
    kind: "too-many-streams",
    message: "Too many streams are open to the service (other tabs of this app?). Close some and try again.",
  },
  [ErrorReason.SHUTTING_DOWN]: {
    kind: "unavailable",
    message: "The service is restarting. Please try again in a moment.",
  },
  [ErrorReason.EMAIL_ALREADY_REGISTERED]: {
    kind: "email-taken",
    message: "An account with this email already exists. Sign in instead?",
  },
  [ErrorReason.INVALID_CREDENTIALS]: { kind: "invalid-credentials", message: "Invalid email or password." },
  [ErrorReason.INVALID_TOKEN]: { kind: "token-invalid", message: "Please sign in again." },
  [ErrorReason.INVALID_REFRESH_TOKEN]: {
    kind: "refresh-token-invalid",
    message: "Your session has ended. Please sign in again.",
  },
  [ErrorReason.TOO_MANY_ATTEMPTS]: {
    kind: "too-many-attempts",
    message: (facts) => `${THROTTLED["too-many-attempts"]} ${tryAgain(facts, "Try again later.")}`,
  },
  [ErrorReason.TOO_MANY_REQUESTS]: {
    kind: "too-many-requests",
    message: (facts) => `${THROTTLED["too-many-requests"]} ${tryAgain(facts, "Try again in a moment.")}`,
  },
  [ErrorReason.SESSION_NOT_FOUND]: {
    kind: "session-not-found",
    message: "That session has already ended (signed out or expired).",
  },
  [ErrorReason.TASK_NOT_FOUND]: { kind: "not-found", message: "That task no longer exists." },
  [ErrorReason.ETAG_MISMATCH]: {
    kind: "etag-mismatch",
    message: "This task was changed elsewhere; showing the latest version.",
  },
  [ErrorReason.TASK_QUOTA_EXCEEDED]: {
    kind: "task-quota",
    message: "You have as many tasks as an account may have. Delete some to add more.",
  },
  [ErrorReason.TOO_MANY_UNREAD_REPLIES]: {
    kind: "too-many-unread-replies",
    message: (facts) =>
      `${THROTTLED["too-many-unread-replies"]} ${tryAgain(facts, "Try again shortly.")}`,
  },
  [ErrorReason.AUTH_SERVICE_UNAVAILABLE]: {
    kind: "unavailable",
    message: "The service is unavailable right now. Please try again in a moment.",
  },
  [ErrorReason.RESUME_TOKEN_EXPIRED]: {
    kind: "resume-token-expired",
    message: "Live updates were interrupted for too long: the list is loaded again.",
  },
};

/** `ErrorInfo.reason` carries the value's proto name ("INVALID_TOKEN"): the enum's
 * descriptor maps names to values (not the TypeScript names, which may drop a prefix). */
const REASON_OF_NAME = new Map<string, Reason>(
  ErrorReasonSchema.values
    .filter((value) => value.number !== ErrorReason.ERROR_REASON_UNSPECIFIED)
    .map((value) => [value.name, value.number as Reason]),
);

/** The kind and message of a reason. */
function shown(reason: Reason, facts: Facts): Pick<Problem, "kind" | "message"> {
  const { kind, message } = BY_REASON[reason];
  return { kind, message: typeof message === "string" ? message : message(facts) };
}

const GENERIC: Pick<Problem, "kind" | "message"> = {
  kind: "internal",
  message: "Something went wrong. Please try again.",
};
const OFFLINE: Pick<Problem, "kind" | "message"> = {
  kind: "unavailable",
  message: "Cannot reach the service. Check your connection and try again.",
};

/** Only for errors without an `ErrorInfo` (or with a reason this app does not know): the
 * browser's own failures (network down: fetch fails, which Connect reports as UNKNOWN), a
 * proxy's or load balancer's answer, the interceptor's "signed out". A code is read as the
 * reason it most often stands for. */
function fromCode(error: ConnectError, facts: Facts): Pick<Problem, "kind" | "message"> {
  switch (error.code) {
    case Code.InvalidArgument:
      return shown(ErrorReason.INVALID_ARGUMENT, facts);
    case Code.AlreadyExists:
      return shown(ErrorReason.EMAIL_ALREADY_REGISTERED, facts);
    case Code.Unauthenticated:
      return shown(ErrorReason.INVALID_TOKEN, facts);
    case Code.ResourceExhausted:
      return shown(ErrorReason.TOO_MANY_ATTEMPTS, facts);
    case Code.NotFound:
      return shown(ErrorReason.TASK_NOT_FOUND, facts);
    case Code.Aborted:
      return shown(ErrorReason.ETAG_MISMATCH, facts);
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return OFFLINE;
    case Code.Unknown:
      return error.cause instanceof TypeError ? OFFLINE : GENERIC; // fetch failed
    default:
      return GENERIC;
  }
}

/** `task.title` → `title`: the forms name fields without the request's nesting. */
function formField(field: string): string {
  return field.startsWith("task.") ? field.slice("task.".length) : field;
}

/** Turns a failed call into what the UI needs, keyed on the `ErrorInfo` reason. */
export function describe(error: unknown): Problem {
  if (!(error instanceof ConnectError)) return { ...GENERIC, fields: {} };
  const fields: Record<string, string> = {};
  for (const badRequest of error.findDetails(BadRequestSchema)) {
    for (const violation of badRequest.fieldViolations) {
      fields[formField(violation.field)] = violation.description;
    }
  }
  const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  // Whole seconds, rounded up: a form that waits that long is not refused again.
  const retryAfterSeconds = delay ? Math.ceil(Number(delay.seconds) + delay.nanos / 1e9) : undefined;
  const facts: Facts = { fields, retryAfterSeconds, rawMessage: error.rawMessage };
  const info = error.findDetails(ErrorInfoSchema)[0];
  const reason = info ? REASON_OF_NAME.get(info.reason) : undefined;
  const what = reason === undefined ? fromCode(error, facts) : shown(reason, facts);
  return { ...what, fields, retryAfterSeconds, reason };
}

/** Kinds the session deals with itself (refresh and retry, or back to sign-in): a form need
 * not show them. */
export function sessionProblem(problem: Problem): boolean {
  return problem.kind === "token-invalid" || problem.kind === "refresh-token-invalid";
}

/** For a throttled answer with a `RetryInfo` delay, what it says without the delay ("Too many
 * attempts."), for a form that counts the delay down itself; undefined for any other. */
export function throttledHeadline(problem: Problem | null | undefined): string | undefined {
  return problem?.retryAfterSeconds ? THROTTLED[problem.kind] : undefined;
}
