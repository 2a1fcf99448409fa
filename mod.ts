/**
 * mvm runtime SDK for TypeScript: sandboxes for code nobody has reviewed,
 * Deno- and Bun-first, with Web Streams everywhere and `await using`.
 *
 * @example Run a file in a sandbox
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.files.write("/app/main.py", "print('hello from mvm')");
 * const r = await sb.commands.run(["python3", "/app/main.py"], { timeoutSeconds: 30 });
 * assert.equal(r.stdout, "hello from mvm\n");
 * assert.equal(r.exitCode, 0);
 * assert.match(r.auditId, /^aud_[0-9a-f]{20}$/);
 * ```
 * @module
 */
export { Sandbox } from "./src/sandbox.ts";
export {
  DEFAULT_SNAPSHOT_RETENTION_SECONDS,
  type ForkInfo,
  type RestoreInfo,
  Snapshot,
  type SnapshotClass,
  type SnapshotInfo,
  type SnapshotOptions,
} from "./src/snapshot.ts";
export { AUDIT_ROTATE_BYTES, type AuditEntry, type AuditReport, verifyAudit } from "./src/audit.ts";
export { Commands, SandboxProcess } from "./src/commands.ts";
export { type FileData, Files, type WriteOptions } from "./src/files.ts";
export type { TransferOptions, TransferProgress, TransferResult } from "./src/transfer.ts";
export { type EgressRule, NetworkPolicy, type SecretAuthType, SecretRef, type SecretRefOptions, type SecretSource } from "./src/policy.ts";
export {
  AdmissionError,
  CleanupError,
  CommandExitError,
  type CommandExitResult,
  CommandTimeoutError,
  ConflictError,
  type ErrorCode,
  IntegrityError,
  InternalError,
  InvalidInputError,
  IsADirectoryError,
  NoSpaceError,
  NotADirectoryError,
  NotFoundError,
  PermissionDeniedError,
  PolicyDeniedError,
  SandboxError,
  type SandboxErrorOptions,
  TimeoutError,
  TransportError,
  UnsupportedError,
} from "./src/errors.ts";
export type {
  Capabilities,
  CommandInfo,
  CommandOptions,
  CommandResult,
  CreateOptions,
  EngineName,
  FileInfo,
  LogEvent,
  LogEventBase,
  ProcessStatus,
  SandboxInfo,
  SandboxState,
} from "./src/types.ts";
export { DEFAULT_TTL_SECONDS, parseTtl } from "./src/ttl.ts";
export { lines } from "./src/streams.ts";
export { currentRecording, resetRecording } from "./src/engines/record/engine.ts";
export {
  type EnvValue,
  type IrApp,
  type IrCommand,
  KNOWN_TEMPLATES,
  type RecordedCreate,
  type RecordedNetwork,
  type RecordedOp,
  type RecordedSecretRef,
  type RuntimeRecording,
  toWorkload,
  type Workload,
} from "./src/engines/record/recording.ts";
export type { WrittenFile } from "./src/engines/contract.ts";
