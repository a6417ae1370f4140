#!/usr/bin/env bash
# Installs what the browser tests need: Debian's chromium, a Java runtime for the Nu Html
# Checker, and the npm packages axe-core and vnu-jar (pinned) under tests/e2e/.tools/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
fi
if [ ! -f "$here/.tools/node_modules/axe-core/axe.min.js" ] || [ ! -f "$here/.tools/node_modules/vnu-jar/build/dist/vnu.jar" ]; then
  mkdir -p "$here/.tools"
  cp "$here/package.json" "$here/.tools/package.json"
  [ -f "$here/package-lock.json" ] && cp "$here/package-lock.json" "$here/.tools/package-lock.json"
  (cd "$here/.tools" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "e2e tools ready: $(chromium --version 2>/dev/null | head -1); java $(java -version 2>&1 | head -1)"
