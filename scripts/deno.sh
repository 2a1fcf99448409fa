#!/bin/sh
# Runs deno from a `deno task`. Tasks call this instead of `deno` because, in a project with a package.json
# and node_modules, Deno's task runner turns every node_modules/.bin entry into a command that runs the file
# as JavaScript (`deno run --ext=js -A <file>`), and that command wins over PATH. The npm package `deno` (a
# devDependency) makes node_modules/.bin/deno the native executable, so a task that says `deno` fails with
# "SyntaxError: Invalid or unexpected token" whether or not a system deno exists.
# This script is run by the deno running the task (its parent), which it runs again; elsewhere, the first
# deno on PATH (a shell's lookup executes a native binary as it is).
exe=$(readlink "/proc/$PPID/exe" 2>/dev/null || true)
case "${exe##*/}" in
  deno*) exec "$exe" "$@" ;;
esac
exec deno "$@"
