#!/bin/sh
# Installs Debian's chromium for the dashboard's browser test (test/e2e/dashboard.test.ts),
# which drives it with playwright-core (playwright's own browser download needs internet).
# Run by the test itself before it starts; needs root (CI is) or an existing /usr/bin/chromium.
# Exits non-zero when the browser cannot be installed: the test then fails, it is never skipped.
set -eu
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-chromium: /usr/bin/chromium is missing and this is not root: run 'apt-get install -y chromium' as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
test -x /usr/bin/chromium
echo "install-chromium: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
