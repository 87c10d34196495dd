#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard browser test when it is missing.
# Without root or apt-get the browser test skips itself with a message saying so.
set -u
if [ -n "${BRIDGE_NO_BROWSER:-}" ]; then
  echo "ensure-chromium: BRIDGE_NO_BROWSER is set; the browser test will be skipped" >&2
  exit 0
fi
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: not root or no apt-get; the browser test will be skipped" >&2
  exit 0
fi
echo "ensure-chromium: installing Debian's chromium for the browser test..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq chromium fonts-noto-color-emoji >/tmp/ensure-chromium.log 2>&1; then
  apt-get update -qq >>/tmp/ensure-chromium.log 2>&1
  apt-get install -y -qq chromium fonts-noto-color-emoji >>/tmp/ensure-chromium.log 2>&1 \
    || echo "ensure-chromium: install failed (see /tmp/ensure-chromium.log); browser test will skip" >&2
fi
exit 0
