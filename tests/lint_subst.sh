#!/usr/bin/env bash
# Summary: The loop's code has no command or process substitution where a trapped signal may arrive.
# Usage: tests/lint_subst.sh [file...]
#
# bash 5.2 can lose a trapped SIGTERM or SIGINT that arrives while it runs a
# $(...) or <(...) (tests/signal_loss.sh measures it); the loop then never stops.
# So the files the loop sources take command output with log_capture (lib/log.sh).
# A substitution that runs before the traps are set, or in a process that traps
# nothing, carries "# subst-ok: <why>" at the end of its line, or follows a
# comment line "# subst-ok (next N lines): <why>".
set -euo pipefail
cd "$(dirname "$0")/.."
files=("$@")
((${#files[@]})) || files=(loop.sh lib/config.sh lib/lock.sh lib/log.sh lib/resilience.sh
  lib/serve.sh lib/session.sh lib/sidecar.sh lib/spawn.sh lib/wake.sh lib/worktree.sh)
bad=0
for f in "${files[@]}"; do
  awk -v file="$f" '
    /^[[:space:]]*# subst-ok \(next [0-9]+ lines?\):/ {
      n = $0; sub(/^[^(]*\(next /, "", n); ok = NR + (n + 0); next
    }
    /[^[:space:]].*# subst-ok: / { next }
    NR <= ok { next }
    /^[[:space:]]*#/ { next }
    {
      line = $0
      gsub(/\$\(\(/, "", line)  # arithmetic, not a substitution
      if (line ~ /\$\(|<\(|`/) { printf "%s:%d: substitution in the loop'"'"'s code (use log_capture): %s\n", file, NR, $0; bad = 1 }
    }
    END { exit bad }
  ' "$f" || bad=1
done
exit "$bad"
