#!/bin/sh
# `deno task demo:scoped`: the demo (examples/hello.ts) under exactly the scoped Deno permissions the
# README documents for this host (denoFlags() of the local engine: this state folder, this Perl), so a
# refusal anywhere shows as a PermissionDeniedError naming the flag. The flags themselves are worked out
# by a run with -A (it reads where the state folder and Perl are); the demo runs with nothing more.
set -eu
cd "$(dirname "$0")/.."
deno=$(readlink "/proc/$PPID/exe" 2>/dev/null || true)
case "${deno##*/}" in deno*) ;; *) deno=deno ;; esac
flags=$("$deno" eval --no-check 'import { denoFlags, preflight } from "./src/engines/local/preflight.ts"; console.log(denoFlags(await preflight()).join(" "))')
echo "deno run $flags examples/hello.ts" >&2
# shellcheck disable=SC2086
exec "$deno" run --no-prompt $flags examples/hello.ts
