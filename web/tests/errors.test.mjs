// Unit: src/errors.ts maps each ErrorInfo reason to its kind and message, and falls back to the
// status code only without one. Vite compiles errors.ts and the generated ErrorReason enum
// (dependencies left as imports of node_modules); the errors are built the way the grpc-web
// client builds them: wire details.

import { before, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { compileForNode } from "./harness.mjs";

let describe;
let throttledHeadline;
let ErrorReason;
let ErrorReasonSchema;

before(async () => {
  const modules = await compileForNode("errors-test", { errors: "src/errors.ts", errors_pb: "src/gen/todo/errors/v1/errors_pb.ts" });
  ({ describe, throttledHeadline } = modules.errors);
  ({ ErrorReason, ErrorReasonSchema } = modules.errors_pb);
});

/** A google.rpc.ErrorInfo as it arrives: type name and encoded bytes. */
function errorInfo(reason, domain = "todo.task.v1") {
  const value = new BinaryWriter().tag(1, 2).string(reason).tag(2, 2).string(domain).finish();
  return { type: "google.rpc.ErrorInfo", value };
}

function retryInfo(seconds, nanos = 0) {
  const value = new BinaryWriter().tag(1, 2).fork().tag(1, 0).int64(seconds).tag(2, 0).int32(nanos).join().finish();
  return { type: "google.rpc.RetryInfo", value };
}

function badRequest(field, description) {
  const violation = new BinaryWriter().tag(1, 2).string(field).tag(2, 2).string(description).finish();
  return { type: "google.rpc.BadRequest", value: new BinaryWriter().tag(1, 2).bytes(violation).finish() };
}

function wireError(code, message, ...details) {
  const error = new ConnectError(message, code);
  error.details = details;
  return error;
}

test("each reason maps to its kind and message", () => {
  const cases = [
    ["EMAIL_ALREADY_REGISTERED", Code.AlreadyExists, "email-taken", /already exists/],
    ["INVALID_CREDENTIALS", Code.Unauthenticated, "invalid-credentials", /^Invalid email or password\.$/],
    ["INVALID_TOKEN", Code.Unauthenticated, "token-invalid", /sign in again/],
    ["INVALID_REFRESH_TOKEN", Code.Unauthenticated, "refresh-token-invalid", /session has ended/],
    ["TOO_MANY_ATTEMPTS", Code.ResourceExhausted, "too-many-attempts", /Try again later/],
    ["TOO_MANY_REQUESTS", Code.ResourceExhausted, "too-many-requests", /sign-ins are in progress/],
    ["TOO_MANY_UNREAD_REPLIES", Code.ResourceExhausted, "too-many-unread-replies", /busy sending earlier replies/],
    ["TOO_MANY_STREAMS", Code.ResourceExhausted, "too-many-streams", /Too many streams are open/],
    ["TASK_NOT_FOUND", Code.NotFound, "not-found", /no longer exists/],
    ["SESSION_NOT_FOUND", Code.NotFound, "session-not-found", /session has already ended/],
    ["ETAG_MISMATCH", Code.Aborted, "etag-mismatch", /changed elsewhere/],
    ["AUTH_SERVICE_UNAVAILABLE", Code.Unavailable, "unavailable", /unavailable right now/],
    ["DATABASE_UNAVAILABLE", Code.Unavailable, "unavailable", /unavailable right now/],
    ["REQUEST_TOO_LARGE", Code.ResourceExhausted, "request-too-large", /^That is too long to send\.$/],
    ["TASK_QUOTA_EXCEEDED", Code.ResourceExhausted, "task-quota", /Delete some to add more/],
    ["INTERNAL", Code.Internal, "internal", /Something went wrong/],
    ["SHUTTING_DOWN", Code.Unavailable, "unavailable", /restarting/],
    ["RESUME_TOKEN_EXPIRED", Code.FailedPrecondition, "resume-token-expired", /loaded again/],
  ];
  for (const [reason, code, kind, message] of cases) {
    const problem = describe(wireError(code, "server text", errorInfo(reason)));
    assert.equal(problem.kind, kind, reason);
    assert.equal(problem.reason, ErrorReason[reason]);
    assert.match(problem.message, message, reason);
  }
});

test("every reason of errors.proto gets its own message, not a fallback", () => {
  // Sent with UNKNOWN, a code that says nothing: an unrecognised reason would fall back to the
  // generic message, so a recognised one must differ from it.
  const fallback = describe(wireError(Code.Unknown, "server text", errorInfo("NOT_A_REASON")));
  assert.equal(fallback.reason, undefined);
  const values = ErrorReasonSchema.values.filter(({ number }) => number !== ErrorReason.ERROR_REASON_UNSPECIFIED);
  assert.ok(values.length >= 18, `${values.length} reasons`);
  for (const { name, number } of values) {
    const problem = describe(wireError(Code.Unknown, "server text", errorInfo(name)));
    assert.equal(problem.reason, number, `${name} is recognised`);
    assert.ok(problem.message, name);
    assert.notEqual(problem.message, fallback.message, `${name} has a message of its own`);
    if (number !== ErrorReason.INTERNAL) assert.notEqual(problem.kind, "internal", name);
  }
  // ERROR_REASON_UNSPECIFIED is never sent: it is no reason, the code decides.
  const unspecified = describe(wireError(Code.NotFound, "", errorInfo("ERROR_REASON_UNSPECIFIED")));
  assert.equal(unspecified.reason, undefined);
  assert.equal(unspecified.kind, "not-found");
});

test("throttling reasons say what is throttled, with the RetryInfo delay when there is one", () => {
  const signIns = errorInfo("TOO_MANY_REQUESTS", "todo.auth.v1");
  const requests = describe(wireError(Code.ResourceExhausted, "", signIns, retryInfo(3)));
  assert.equal(requests.kind, "too-many-requests");
  assert.equal(requests.message, "Too many sign-ins are in progress. Try again in 3 s.");
  assert.equal(
    describe(wireError(Code.ResourceExhausted, "", signIns)).message,
    "Too many sign-ins are in progress. Try again in a moment.",
  );

  const unread = describe(wireError(Code.ResourceExhausted, "", errorInfo("TOO_MANY_UNREAD_REPLIES"), retryInfo(2)));
  assert.equal(unread.kind, "too-many-unread-replies");
  assert.equal(unread.message, "The server is still busy sending earlier replies. Try again in 2 s.");
  assert.doesNotMatch(unread.message, /attempts/);
  assert.equal(
    describe(wireError(Code.ResourceExhausted, "", errorInfo("TOO_MANY_UNREAD_REPLIES"))).message,
    "The server is still busy sending earlier replies. Try again shortly.",
  );

  const streams = describe(wireError(Code.ResourceExhausted, "", errorInfo("TOO_MANY_STREAMS")));
  assert.equal(streams.kind, "too-many-streams");
  assert.match(streams.message, /^Too many streams are open .*tabs.*try again\.$/);
});

test("the reason wins over the code: RESOURCE_EXHAUSTED is not always throttling", () => {
  const tooLarge = describe(wireError(Code.ResourceExhausted, "", errorInfo("REQUEST_TOO_LARGE")));
  assert.equal(tooLarge.kind, "request-too-large");
  const throttled = describe(wireError(Code.ResourceExhausted, "", errorInfo("TOO_MANY_ATTEMPTS"), retryInfo(7)));
  assert.equal(throttled.kind, "too-many-attempts");
  assert.equal(throttled.retryAfterSeconds, 7);
  assert.equal(throttled.message, "Too many attempts. Try again in 7 s.");
});

test("a RetryInfo delay is rounded up to whole seconds, and forms count it down from a headline", () => {
  const throttled = describe(wireError(Code.ResourceExhausted, "", errorInfo("TOO_MANY_ATTEMPTS"), retryInfo(1, 750_000_000)));
  assert.equal(throttled.retryAfterSeconds, 2);
  assert.equal(throttled.message, "Too many attempts. Try again in 2 s.");
  assert.equal(throttledHeadline(throttled), "Too many attempts.");
  const signIns = describe(wireError(Code.ResourceExhausted, "", errorInfo("TOO_MANY_REQUESTS"), retryInfo(3)));
  assert.equal(throttledHeadline(signIns), "Too many sign-ins are in progress.");
  // Without a delay there is nothing to count down; other reasons are never throttling.
  assert.equal(throttledHeadline(describe(wireError(Code.ResourceExhausted, "", errorInfo("TOO_MANY_ATTEMPTS")))), undefined);
  assert.equal(throttledHeadline(describe(wireError(Code.ResourceExhausted, "", errorInfo("REQUEST_TOO_LARGE"), retryInfo(3)))), undefined);
  assert.equal(throttledHeadline(null), undefined);
});

test("field violations become form fields", () => {
  const problem = describe(
    wireError(Code.InvalidArgument, "bad", errorInfo("INVALID_ARGUMENT"), badRequest("task.title", "is required")),
  );
  assert.equal(problem.kind, "invalid-argument");
  assert.deepEqual(problem.fields, { title: "is required" });
  assert.equal(problem.message, "Please correct the highlighted fields.");
});

test("without ErrorInfo (or with an unknown reason) the status code decides", () => {
  const bare = describe(new ConnectError("from a proxy", Code.Unauthenticated));
  assert.equal(bare.kind, "token-invalid");
  assert.equal(bare.reason, undefined);
  assert.equal(describe(wireError(Code.NotFound, "", errorInfo("SOMETHING_NEW"))).kind, "not-found");
  const offline = describe(ConnectError.from(new TypeError("Failed to fetch")));
  assert.equal(offline.kind, "unavailable");
  assert.match(offline.message, /Check your connection/);
  assert.equal(describe(new Error("not a call")).kind, "internal");
});
