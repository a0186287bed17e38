import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb";

/** What the UI shows for a failed call: a message, and per-field messages when the server
 * sent `google.rpc.BadRequest` field violations. */
export interface Problem {
  message: string;
  fields: Record<string, string>;
  code: Code | undefined;
}

/** `task.title` → `title`: the forms name fields without the request's nesting. */
function formField(field: string): string {
  return field.startsWith("task.") ? field.slice("task.".length) : field;
}

export function describe(error: unknown): Problem {
  if (!(error instanceof ConnectError)) {
    return { message: "Something went wrong. Please try again.", fields: {}, code: undefined };
  }
  const fields: Record<string, string> = {};
  for (const badRequest of error.findDetails(BadRequestSchema)) {
    for (const violation of badRequest.fieldViolations) {
      fields[formField(violation.field)] = violation.description;
    }
  }
  switch (error.code) {
    case Code.InvalidArgument:
      return {
        message: Object.keys(fields).length ? "Please correct the highlighted fields." : error.rawMessage,
        fields,
        code: error.code,
      };
    case Code.Unauthenticated:
      return { message: error.rawMessage || "Please sign in again.", fields, code: error.code };
    case Code.ResourceExhausted: {
      const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
      const seconds = delay ? Number(delay.seconds) : undefined;
      return {
        message: seconds
          ? `Too many attempts. Try again in ${seconds} s.`
          : "Too many attempts. Try again later.",
        fields,
        code: error.code,
      };
    }
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return {
        message: "The service is unavailable right now. Check your connection and try again.",
        fields,
        code: error.code,
      };
    case Code.AlreadyExists:
      return { message: "An account with this email already exists. Sign in instead?", fields, code: error.code };
    case Code.NotFound:
      return { message: "That task no longer exists.", fields, code: error.code };
    case Code.Aborted:
      return { message: "This task was changed elsewhere; showing the latest version.", fields, code: error.code };
    default:
      return { message: "Something went wrong. Please try again.", fields, code: error.code };
  }
}
