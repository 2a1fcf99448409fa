#!/usr/bin/env bash
# Installs what the SDK and its tests need on a fresh Debian/Ubuntu machine:
# bubblewrap, util-linux, and nftables/iproute2 for egress (openssl and IO::Socket::SSL for secrets, curl for its tests) from apt (only what is missing), Deno and Bun from
# npm (pinned in package-lock.json), with TypeScript for the consumer type-check. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for b in bwrap:bubblewrap perl:perl-base nsenter:util-linux setpriv:util-linux setsid:util-linux /usr/bin/python3:python3 sha256sum:coreutils tar:tar nft:nftables ip:iproute2 openssl:openssl curl:curl; do
  command -v "${b%%:*}" >/dev/null 2>&1 || need+=("${b##*:}")
done
# secrets bound to hosts: the egress proxy terminates TLS with IO::Socket::SSL; the sandbox's CA joins the system bundle
perl -MIO::Socket::SSL -e1 >/dev/null 2>&1 || need+=(libio-socket-ssl-perl)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${need[*]} — install them with: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# the packages ship their binaries; their postinstall steps are not needed
# (a fresh tree gets `npm ci`; an existing one only what the lock file added, so a tree shared by running tests is never emptied)
if [ ! -x node_modules/.bin/deno ] || [ ! -x node_modules/.bin/bun ]; then
  npm ci --no-audit --no-fund --loglevel=error
elif [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
