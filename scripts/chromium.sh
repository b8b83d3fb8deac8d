#!/usr/bin/env bash
# Print the path of a headless-capable Chromium for the dashboard's browser test, installing
# Debian's package when none is there (needs root and apt). Playwright drives it through
# executable_path; nothing is downloaded from Playwright's CDN.
set -euo pipefail

for name in chromium chromium-browser google-chrome; do
  if command -v "$name" > /dev/null; then
    command -v "$name"
    exit 0
  fi
done
echo "installing Chromium from Debian..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >&2 || { apt-get update -qq >&2 && apt-get install -y -qq chromium >&2; }
command -v chromium
