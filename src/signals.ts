/**
 * Signal names and numbers (Linux), for the exit code of a process a signal ended: 128 + the
 * signal's number, as shells, `Deno.Command` and upstream mvm's `proc wait` report it.
 *
 * @example
 * ```ts
 * import { signalExitCode } from "./signals.ts";
 * console.log(signalExitCode("SIGKILL")); // 137
 * ```
 * @module
 */

/** Linux signal numbers by name (x86-64 and arm64 share them). */
export const SIGNALS: Readonly<Record<string, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/**
 * The exit code a shell reports for a process `signal` ended: 128 + its number (137 for SIGKILL,
 * 143 for SIGTERM); 128 for a name this table does not know, so an ended process always has a code.
 *
 * @example `signalExitCode("SIGTERM") // 143`
 */
export function signalExitCode(signal: string): number {
  return 128 + (SIGNALS[signal] ?? 0);
}
