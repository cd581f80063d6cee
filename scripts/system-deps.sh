#!/usr/bin/env bash
# Installs the system packages some tests use: PostgreSQL (the postgres SQL
# dialect runs on a real server), Chromium (the HTML report is opened in a
# headless browser) and the VS Code extension's npm packages. Each is
# skipped with a message when it cannot be installed; the tests that need it
# then skip with the same reason.
set -u
need=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing ${need[*]} (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null) \
      || echo "system-deps: could not install ${need[*]}; the tests that need them will skip"
  else
    echo "system-deps: ${need[*]} missing and not installable here (need root and apt-get); those tests will skip"
  fi
fi
if [ -f editors/vscode/package-lock.json ] && command -v npm >/dev/null 2>&1 && [ ! -d editors/vscode/node_modules ]; then
  echo "system-deps: npm ci (editors/vscode)"
  (cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error) || echo "system-deps: npm ci failed; the VS Code tests will skip"
fi
exit 0
