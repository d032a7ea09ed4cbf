#!/usr/bin/env bash
# Installs the real VNC peers that the end-to-end tests drive (Debian 12; root, or a user with sudo):
#   - X servers and VNC servers: Xvfb, x11vnc, TigerVNC's Xvnc (+ vncpasswd),
#   - TigerVNC's GUI viewer (vncviewer), driven with xdotool for the TLS (VeNCrypt) tests,
#   - the demo application and X tools: xterm, xdotool, xdpyinfo, base fonts,
#   - RDP peers: FreeRDP 2's client (xfreerdp), shadow server (freerdp-shadow-cli) and winpr-hash
#     (NLA SAM files); xrdp (+ xorgxrdp) in front of x11vnc; openssl and ssl-cert for certificates
#     (on a machine with systemd the xrdp package also enables its own service on port 3389, which
#     the tests do not use: `systemctl disable --now xrdp xrdp-sesman` if unwanted),
#   - a Python virtual environment with vncdotool (the scripted VNC viewer) and Pillow.
#
#   scripts/install-peers.sh
#
# Idempotent: packages already installed are not touched, `apt-get update` runs only when something
# is missing, and an existing virtual environment with the pinned versions is kept. Silent on success.
#
# Environment:
#   PSMGATE_PEERS_VENV   where the virtual environment lives (default: <repo>/target/peers-venv);
#                        the tests read the same variable.
#   PSMGATE_PEERS_PYTHON interpreter used to create it (default: /usr/bin/python3, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

VNCDOTOOL_VERSION=1.4.2
apt_pkgs=(xvfb x11vnc tigervnc-standalone-server tigervnc-tools tigervnc-viewer xterm xdotool x11-utils xfonts-base
  freerdp2-x11 freerdp2-shadow-x11 winpr-utils xrdp xorgxrdp ssl-cert openssl
  python3 python3-venv)
venv=${PSMGATE_PEERS_VENV:-$PWD/target/peers-venv}

die() {
  echo "install-peers: error: $*" >&2
  exit 1
}

log=$(mktemp "${TMPDIR:-/tmp}/install-peers.XXXXXX.log")
trap 'rm -f "$log"' EXIT
# run_logged DESCRIPTION CMD...: runs CMD with its output in $log; on failure shows the tail and stops.
run_logged() {
  local what=$1
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "install-peers: error: $what failed; last lines of its output:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
}

# ---------------------------------------------------------------- Debian packages
command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian 12 only"
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
    SUDO=(sudo)
  fi
  run_logged "apt-get update" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  run_logged "apt-get install ${missing[*]}" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for tool in Xvfb Xvnc vncpasswd x11vnc xterm xdotool xdpyinfo \
  xfreerdp freerdp-shadow-cli winpr-hash openssl stdbuf; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is still missing after installing the packages"
done
# xrdp lives in /usr/sbin, which is not on every user's PATH; the tests look there too.
command -v xrdp >/dev/null 2>&1 || [[ -x /usr/sbin/xrdp ]] || die "xrdp is still missing after installing the packages"

# ---------------------------------------------------------------- Python venv: vncdotool + Pillow
venv_ok() {
  [[ -x "$venv/bin/python" ]] || return 1
  "$venv/bin/python" - "$VNCDOTOOL_VERSION" >/dev/null 2>&1 <<'EOF'
import sys
from importlib.metadata import version
import PIL, vncdotool  # noqa: F401  (both must import)
sys.exit(0 if version("vncdotool") == sys.argv[1] else 1)
EOF
}

if ! venv_ok; then
  python=${PSMGATE_PEERS_PYTHON:-}
  if [[ -z "$python" ]]; then
    if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; else python=python3; fi
  fi
  command -v "$python" >/dev/null 2>&1 || die "no Python interpreter '$python'"
  mkdir -p "$(dirname "$venv")"
  [[ -x "$venv/bin/python" ]] || run_logged "creating the virtual environment $venv" "$python" -m venv "$venv"
  run_logged "pip install vncdotool==$VNCDOTOOL_VERSION Pillow" \
    env PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q \
    "vncdotool==$VNCDOTOOL_VERSION" Pillow
  venv_ok || die "the virtual environment $venv does not provide vncdotool $VNCDOTOOL_VERSION and Pillow"
fi
