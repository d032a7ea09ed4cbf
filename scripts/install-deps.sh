#!/usr/bin/env bash
# Installs what building and testing psmgate needs on Debian 12 (run as root, or with sudo).
#   scripts/install-deps.sh          build deps + test peers (ffmpeg, chromium, playwright-core,
#                                    rsyslog with GnuTLS as the SIEM receiver, oidc-provider as
#                                    the OpenID provider)
#   scripts/install-deps.sh --build  build deps only (nasm for rav1e, SVT-AV1, pkg-config, the web
#                                    recorder's npm package)
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(nasm libsvtav1enc-dev pkg-config)
test_pkgs=(ffmpeg chromium fonts-liberation libnss3-tools curl rsyslog rsyslog-gnutls)
pkgs=("${build_pkgs[@]}")
[[ "${1:-}" == "--build" ]] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# The in-page web recorder embeds rrweb's recorder from npm (version pinned by the lockfile).
if ! command -v npm >/dev/null; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
fi
(cd web-recorder && npm ci --no-audit --no-fund --silent)

if [[ "${1:-}" != "--build" ]]; then
  scripts/install-peers.sh
  (cd tests/player && npm install --no-audit --no-fund --silent)
  (cd tests/web && npm install --no-audit --no-fund --silent)
  (cd tests/oidc && npm install --no-audit --no-fund --silent)
fi
