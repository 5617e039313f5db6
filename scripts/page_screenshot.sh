#!/usr/bin/env bash
# Render a report's page in headless Chromium (Debian: apt-get install chromium) and save a
# screenshot, to look at the page as a reader will: bash scripts/page_screenshot.sh REPORT_DIR [OUT.png]
set -euo pipefail
report="${1:?usage: page_screenshot.sh REPORT_DIR [OUT.png]}"
out="${2:-$report/screenshot.png}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
    echo "page_screenshot: no Chromium found (Debian: apt-get install chromium)" >&2
    exit 2
fi
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1300,4000 \
    --screenshot="$out" "file://$(realpath "$report")/index.html" 2>/dev/null
echo "screenshot: $out"
