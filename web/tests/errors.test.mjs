// Unit: src/errors.ts maps each ErrorInfo reason to its kind and message, and falls back to the
// status code only without one. Vite compiles errors.ts (dependencies left as imports of
// node_modules); the errors are built the way the grpc-web client builds them: wire details.

import { before, test } from "node:test";
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { build } from "vite";

const web = resolve(fileURLToPath(import.meta.url), "..", "..");
let describe;

before(async () => {
  const outDir = join(web, "node_modules", ".cache", "errors-test");
  await build({
    root: web,
    configFile: false,
    publicDir: false,
    logLevel: "warn",
    build: { ssr: "src/errors.ts", outDir, emptyOutDir: true },
  });
  ({ describe } = await import(pathToFileURL(join(outDir, "errors.js")).href));
});

/** A google.rpc.ErrorInfo as it arrives: type name and encoded bytes. */
function errorInfo(reason, domain = "todo.task.v1") {
  const value = new BinaryWriter().tag(1, 2).string(reason).tag(2, 2).string(domain).finish();
  return { type: "google.rpc.ErrorInfo", value };
}

function retryInfo(seconds) {
  const value = new BinaryWriter().tag(1, 2).fork().tag(1, 0).int64(seconds).join().finish();
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
    ["TASK_NOT_FOUND", Code.NotFound, "not-found", /no longer exists/],
    ["ETAG_MISMATCH", Code.Aborted, "etag-mismatch", /changed elsewhere/],
    ["AUTH_SERVICE_UNAVAILABLE", Code.Unavailable, "unavailable", /unavailable right now/],
    ["DATABASE_UNAVAILABLE", Code.Unavailable, "unavailable", /unavailable right now/],
    ["REQUEST_TOO_LARGE", Code.ResourceExhausted, "request-too-large", /^That is too long to send\.$/],
    ["TASK_QUOTA_EXCEEDED", Code.ResourceExhausted, "task-quota", /Delete some to add more/],
    ["INTERNAL", Code.Internal, "internal", /Something went wrong/],
  ];
  for (const [reason, code, kind, message] of cases) {
    const problem = describe(wireError(code, "server text", errorInfo(reason)));
    assert.equal(problem.kind, kind, reason);
    assert.equal(problem.reason, reason);
    assert.match(problem.message, message, reason);
  }
});

test("the reason wins over the code: RESOURCE_EXHAUSTED is not always throttling", () => {
  const tooLarge = describe(wireError(Code.ResourceExhausted, "", errorInfo("REQUEST_TOO_LARGE")));
  assert.equal(tooLarge.kind, "request-too-large");
  const throttled = describe(wireError(Code.ResourceExhausted, "", errorInfo("TOO_MANY_ATTEMPTS"), retryInfo(7)));
  assert.equal(throttled.kind, "too-many-attempts");
  assert.equal(throttled.retryAfterSeconds, 7);
  assert.equal(throttled.message, "Too many attempts. Try again in 7 s.");
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
