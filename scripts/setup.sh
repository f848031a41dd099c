#!/usr/bin/env bash
# Installs what diffscope needs on a fresh Debian/Ubuntu machine that has Node.js/npm: Deno (from npm), Mesa's
# software Vulkan driver (WebGPU without a GPU) and Chromium (the browser test). Idempotent: skips what is there.
set -euo pipefail
DENO_VERSION=2.9.6

if ! command -v deno >/dev/null 2>&1; then
  echo "setup: installing deno@${DENO_VERSION} from npm"
  npm install -g --silent "deno@${DENO_VERSION}"
fi

missing=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup: $(deno --version | head -n1); mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers); $(chromium --version 2>/dev/null || echo 'chromium missing')"
