#!/usr/bin/env bash
# Renders a drill HTML report to a PNG with headless Chromium, offline, and checks
# that a real image came out. Usage: render-report-png.sh REPORT.html OUT.png
# Chromium comes from Debian: apt-get install -y --no-install-recommends chromium-headless-shell
set -euo pipefail
html=${1:?usage: render-report-png.sh REPORT.html OUT.png}
png=${2:?usage: render-report-png.sh REPORT.html OUT.png}
browser=""
for b in chromium-headless-shell chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
if [[ -z $browser ]]; then
  echo "render-report-png: no headless Chromium found (apt-get install chromium-headless-shell)" >&2
  exit 2
fi
# No network: the page must not need any (the report is self-contained).
timeout 60 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --no-first-run --disable-background-networking --proxy-server=127.0.0.1:9 \
  --window-size=1000,1700 --screenshot="$png" "file://$(realpath "$html")" >/dev/null 2>&1
if [[ $(head -c 8 "$png" | od -An -tx1 | tr -d ' \n') != 89504e470d0a1a0a ]]; then
  echo "render-report-png: $png is not a PNG" >&2
  exit 1
fi
size=$(stat -c %s "$png")
if (( size < 20000 )); then
  echo "render-report-png: $png is only $size bytes: an empty page?" >&2
  exit 1
fi
echo "rendered $html -> $png ($size bytes) with $browser"
