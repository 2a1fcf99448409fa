#!/usr/bin/env bash
# Builds the npm package from the same source as the Deno/JSR one: tsc emits ESM JavaScript and .d.ts
# for mod.ts and everything it imports into dist/ (relative ".ts" imports rewritten to ".js"), which
# runs on Node >= 20, Bun and Deno (through npm). `npm pack` runs this first (package.json's prepack).
# Usage: bash scripts/build-npm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TSC=./node_modules/.bin/tsc
[ -x "$TSC" ] || { echo "tsc missing: run 'bash scripts/setup.sh' (or 'npm ci') first" >&2; exit 2; }
# the two manifests must name the same version
v_npm=$(sed -nE 's/^  "version": "([^"]+)".*/\1/p' package.json)
v_jsr=$(sed -nE 's/^  "version": "([^"]+)".*/\1/p' deno.json)
[ "$v_npm" = "$v_jsr" ] || { echo "package.json says $v_npm, deno.json says $v_jsr: make them the same" >&2; exit 1; }
grep -q "^## $v_npm" CHANGELOG.md || { echo "CHANGELOG.md has no '## $v_npm' section" >&2; exit 1; }
rm -rf dist
"$TSC" -p tsconfig.npm.json >&2 # stdout is npm pack --json's
echo "dist/: $(find dist -name '*.js' | wc -l) modules, $(find dist -name '*.d.ts' | wc -l) declaration files" >&2
