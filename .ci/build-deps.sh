#!/usr/bin/env bash
# The Debian packages needed to build the workspace (librdkafka is compiled from source by
# rdkafka-sys). One list, used by .ci/run and by both Dockerfiles, so CI and the images build
# the same way. Installs only what is missing.
set -euo pipefail
packages=(gcc g++ make pkg-config libssl-dev zlib1g-dev perl python3 "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "build dependencies present: ${packages[*]}"
  exit 0
fi
echo "installing: ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
