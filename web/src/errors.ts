import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb";

/** What kind of failure a call met, whatever the wording. */
export type ProblemKind =
  | "invalid-argument"
  | "email-taken"
  | "invalid-credentials"
  | "token-invalid"
  | "refresh-token-invalid"
  | "too-many-attempts"
  | "not-found"
  | "etag-mismatch"
  | "unavailable"
  | "request-too-large"
  | "task-quota"
  | "internal";

/** What the UI shows for a failed call: a message, per-field messages (from
 * `google.rpc.BadRequest` field violations) and, when throttled, the `RetryInfo` delay. */
export interface Problem {
  kind: ProblemKind;
  message: string;
  fields: Record<string, string>;
  retryAfterSeconds?: number;
  /** The `google.rpc.ErrorInfo` reason; undefined when the kind came from the status code. */
  reason?: string;
}

/** The services' stable `ErrorInfo` reasons (README, "Try it with grpcurl"). */
const KIND_OF_REASON: Record<string, ProblemKind> = {
  INVALID_ARGUMENT: "invalid-argument",
  EMAIL_ALREADY_REGISTERED: "email-taken",
  INVALID_CREDENTIALS: "invalid-credentials",
  INVALID_TOKEN: "token-invalid",
  INVALID_REFRESH_TOKEN: "refresh-token-invalid",
  TOO_MANY_ATTEMPTS: "too-many-attempts",
  TASK_NOT_FOUND: "not-found",
  ETAG_MISMATCH: "etag-mismatch",
  AUTH_SERVICE_UNAVAILABLE: "unavailable",
  DATABASE_UNAVAILABLE: "unavailable",
  REQUEST_TOO_LARGE: "request-too-large",
  TASK_QUOTA_EXCEEDED: "task-quota",
  INTERNAL: "internal",
};

/** Only for errors without an `ErrorInfo` (or with a reason this app does not know): the
 * browser's own failures (network down: fetch fails, which Connect reports as UNKNOWN), a
 * proxy's or load balancer's answer, the interceptor's "signed out". */
function kindOfCode(error: ConnectError): ProblemKind {
  switch (error.code) {
    case Code.InvalidArgument:
      return "invalid-argument";
    case Code.AlreadyExists:
      return "email-taken";
    case Code.Unauthenticated:
      return "token-invalid";
    case Code.ResourceExhausted:
      return "too-many-attempts";
    case Code.NotFound:
      return "not-found";
    case Code.Aborted:
      return "etag-mismatch";
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return "unavailable";
    case Code.Unknown:
      return error.cause instanceof TypeError ? "unavailable" : "internal"; // fetch failed
    default:
      return "internal";
  }
}

const MESSAGES: Record<ProblemKind, string> = {
  "invalid-argument": "Please correct the highlighted fields.",
  "email-taken": "An account with this email already exists. Sign in instead?",
  "invalid-credentials": "Invalid email or password.",
  "token-invalid": "Please sign in again.",
  "refresh-token-invalid": "Your session has ended. Please sign in again.",
  "too-many-attempts": "Too many attempts. Try again later.",
  "not-found": "That task no longer exists.",
  "etag-mismatch": "This task was changed elsewhere; showing the latest version.",
  unavailable: "The service is unavailable right now. Please try again in a moment.",
  "request-too-large": "That is too long to send.",
  "task-quota": "You have as many tasks as an account may have. Delete some to add more.",
  internal: "Something went wrong. Please try again.",
};

function message(kind: ProblemKind, error: ConnectError, problem: Omit<Problem, "message">): string {
  if (kind === "invalid-argument" && !Object.keys(problem.fields).length) return error.rawMessage;
  if (kind === "too-many-attempts" && problem.retryAfterSeconds) {
    return `Too many attempts. Try again in ${problem.retryAfterSeconds} s.`;
  }
  if (kind === "unavailable" && !problem.reason) {
    return "Cannot reach the service. Check your connection and try again.";
  }
  return MESSAGES[kind];
}

/** `task.title` → `title`: the forms name fields without the request's nesting. */
function formField(field: string): string {
  return field.startsWith("task.") ? field.slice("task.".length) : field;
}

/** Turns a failed call into what the UI needs, keyed on the `ErrorInfo` reason. */
export function describe(error: unknown): Problem {
  if (!(error instanceof ConnectError)) return { kind: "internal", message: MESSAGES.internal, fields: {} };
  const fields: Record<string, string> = {};
  for (const badRequest of error.findDetails(BadRequestSchema)) {
    for (const violation of badRequest.fieldViolations) {
      fields[formField(violation.field)] = violation.description;
    }
  }
  const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  const retryAfterSeconds = delay ? Number(delay.seconds) : undefined;
  const info = error.findDetails(ErrorInfoSchema)[0];
  const known = info && Object.hasOwn(KIND_OF_REASON, info.reason) ? info.reason : undefined;
  const kind = known ? KIND_OF_REASON[known] : kindOfCode(error);
  const problem = { kind, fields, retryAfterSeconds, reason: known };
  return { ...problem, message: message(kind, error, problem) };
}

/** Kinds the session deals with itself (refresh and retry, or back to sign-in): a form need
 * not show them. */
export function sessionProblem(problem: Problem): boolean {
  return problem.kind === "token-invalid" || problem.kind === "refresh-token-invalid";
}
