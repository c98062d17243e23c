#!/usr/bin/env bash
# Summary: Installs the Debian packages the tests need, when they are missing.
# Usage: tests/install-deps.sh
set -euo pipefail
if [[ "${1:-}" == --help ]]; then
  sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit 0
fi
need=()
command -v bats >/dev/null || need+=(bats)
[[ -f /usr/lib/bats/bats-support/load.bash ]] || need+=(bats-support)
[[ -f /usr/lib/bats/bats-assert/load.bash ]] || need+=(bats-assert)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v jq >/dev/null || need+=(jq)
command -v git >/dev/null || need+=(git)
command -v flock >/dev/null || need+=(util-linux)
command -v npm >/dev/null || need+=(npm)
command -v curl >/dev/null || need+=(curl)
# the dashboard's browser tests drive it (Playwright, with this executable)
command -v chromium >/dev/null || need+=(chromium)
# STORE=postgres's tests start a private cluster (tests/pg_cluster.sh) and use psql
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
# packaging.bats: the units as systemd reads them, and the logrotate file rotated
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v logrotate >/dev/null || need+=(logrotate)
# SANDBOX=bwrap's end-to-end test
command -v bwrap >/dev/null || need+=(bubblewrap)
if ((${#need[@]} == 0)); then
  exit 0
fi
echo "installing: ${need[*]}"
sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
