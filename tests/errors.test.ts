// The error classes: codes, names, instanceof, details and cause. Pure: no sandbox, no root.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "../mod.ts";
import { CommandExitError, type ErrorCode, InvalidInputError, NotFoundError, SandboxError, TransportError } from "../mod.ts";
import { invalid } from "../src/errors.ts";

const CODES: Record<string, ErrorCode> = {
  PolicyDeniedError: "POLICY_DENIED",
  AdmissionError: "ADMISSION",
  TimeoutError: "TIMEOUT",
  TransportError: "TRANSPORT",
  CleanupError: "CLEANUP",
  IntegrityError: "INTEGRITY",
  UnsupportedError: "UNSUPPORTED",
  NotFoundError: "NOT_FOUND",
  InvalidInputError: "INVALID_INPUT",
  ConflictError: "CONFLICT",
  PermissionDeniedError: "PERMISSION_DENIED",
  NotADirectoryError: "NOT_A_DIRECTORY",
  IsADirectoryError: "IS_A_DIRECTORY",
  NoSpaceError: "NO_SPACE",
  InternalError: "INTERNAL",
};
type Category = new (message: string, options?: sdk.SandboxErrorOptions) => SandboxError;
const category = (name: string) => (sdk as unknown as Record<string, Category>)[name];

test("errors: each category class carries its own stable code", () => {
  for (const [name, code] of Object.entries(CODES)) assert.equal(new (category(name))("m").code, code, name);
});

test("errors: the static code of each class equals its instances' code", () => {
  for (const [name, code] of Object.entries(CODES)) assert.equal((category(name) as unknown as { code: ErrorCode }).code, code, name);
});

test("errors: name is the class name", () => {
  for (const name of Object.keys(CODES)) assert.equal(new (category(name))("m").name, name);
});

test("errors: every category is an instance of SandboxError and Error", () => {
  for (const name of Object.keys(CODES)) {
    const e = new (category(name))("m");
    assert.ok(e instanceof SandboxError, name);
    assert.ok(e instanceof Error, name);
  }
});

test("errors: a category is not an instance of another category", () => {
  assert.equal(new NotFoundError("m") instanceof TransportError, false);
});

test("errors: the message is kept as given", () => {
  assert.equal(new NotFoundError("no such file: /x").message, "no such file: /x");
});

test("errors: details default to an empty object", () => {
  assert.deepEqual(new NotFoundError("m").details, {});
});

test("errors: details are kept as given", () => {
  assert.deepEqual(new NotFoundError("m", { details: { path: "/x" } }).details, { path: "/x" });
});

test("errors: cause is the standard Error.cause", () => {
  const cause = new Error("EPIPE");
  assert.equal(new TransportError("m", { cause }).cause, cause);
});

test("errors: no cause leaves Error.cause unset", () => {
  assert.equal(Object.hasOwn(new TransportError("m"), "cause"), false);
});

test("errors: a plain SandboxError defaults to INTERNAL", () => {
  const e = new SandboxError("m");
  assert.equal(e.code, "INTERNAL");
  assert.equal(e.name, "SandboxError");
});

test("errors: a plain SandboxError takes an explicit code", () => {
  assert.equal(new SandboxError("m", { code: "TIMEOUT" }).code, "TIMEOUT");
});

test("errors: CommandExitError keeps the result and puts exit code and signal in details", () => {
  const result = {
    exitCode: 3,
    signal: null,
    stdout: "",
    stderr: "oops\n",
    timedOut: false,
    oomKilled: false,
    durationMs: 1,
    auditId: "aud_0123456789abcdef0123",
  };
  const e = new CommandExitError("command exited with code 3", result);
  assert.equal(e.code, "COMMAND_FAILED");
  assert.equal(e.name, "CommandExitError");
  assert.equal(e.result, result);
  assert.deepEqual(e.details, { exitCode: 3, signal: null });
});

test("errors: invalid() names the field in the message and in details", () => {
  const e = invalid("ttl", "must be positive");
  assert.ok(e instanceof InvalidInputError);
  assert.equal(e.message, "ttl: must be positive");
  assert.deepEqual(e.details, { field: "ttl" });
});

test("errors: every exported error class is covered here", () => {
  const exported = Object.entries(sdk).filter(([, v]) => typeof v === "function" && v.prototype instanceof SandboxError).map(([k]) => k);
  assert.deepEqual(exported.sort(), [...Object.keys(CODES), "CommandExitError", "CommandTimeoutError"].sort());
});
