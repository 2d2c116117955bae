#!/usr/bin/env bash
# Used by ./test (and by tests/test_explorer.py when run on its own): make sure
# Debian's chromium is there for the explorer's browser test.
#
#   chromium on PATH             nothing to do (one lookup)
#   root, apt-get available      apt-get install chromium; apt-get update first
#                                only if the install fails without it
#   otherwise                    nothing; the browser test skips and says why
#
# Quiet unless it installs; never fails the caller: a chromium that could not
# be installed is reported by the test (it fails where it could have been
# installed, i.e. as root with apt-get, as in CI).
set -uo pipefail
for name in chromium chromium-browser; do
    command -v "$name" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    exit 0
fi
LOG="${TMPDIR:-/tmp}/ensure-chromium.log"
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -q -y -o DPkg::Lock::Timeout=300 --no-install-recommends)
echo "[ensure-chromium] installing Debian's chromium for the explorer test (log: $LOG)" >&2
if "${APT[@]}" install chromium >"$LOG" 2>&1; then exit 0; fi
if apt-get -q -o DPkg::Lock::Timeout=300 update >>"$LOG" 2>&1 && "${APT[@]}" install chromium >>"$LOG" 2>&1; then
    exit 0
fi
echo "[ensure-chromium] could not install chromium; see $LOG" >&2
exit 0
