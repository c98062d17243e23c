# shellcheck shell=bash
# What happens after a verdict: one policy per verdict, in one place.
# Sourced, not executed.
#
#   verdict                          action
#   succeeded                        done      -> succeeded/
#   max_turns, budget_exceeded       quarantine at once (a retry would hit the same limit)
#   auth_error                       requeue, no attempt counted; the loop halts (credentials)
#   usage_limited                    requeue, no attempt counted; spawning paused until the reset
#   interrupted                      requeue, no attempt counted (canceled/ when an operator canceled it)
#   everything else                  retry with backoff, counting an attempt; quarantine after
#                                    MAX_ATTEMPTS, or at once when the classifier says the failure
#                                    cannot be retried (an API 4xx other than 401/403/408/409/429)

# resilience_action <verdict> <retryable>: prints succeed, quarantine, requeue,
# halt, pause or retry.
resilience_action() { # <verdict> <retryable>
  case "$1" in
    succeeded) echo succeed ;;
    max_turns | budget_exceeded) echo quarantine ;;
    auth_error) echo halt ;;
    usage_limited) echo pause ;;
    interrupted) echo requeue ;;
    *) if [[ "$2" == false ]]; then echo quarantine; else echo retry; fi ;;
  esac
}

# resilience_backoff_s <attempt>: full jitter, uniform in [0, min(cap, base*2^(attempt-1))].
resilience_backoff_s() { # <attempt>
  awk -v a="$1" -v base="${CFG[RETRY_BASE_S]}" -v cap="${CFG[RETRY_CAP_S]}" -v r="$RANDOM" \
    'BEGIN { d = base * 2 ^ (a - 1); if (d > cap) d = cap; printf "%.3f\n", d * r / 32767 }'
}

# resilience_iso_in <seconds>: the UTC time that many seconds from now.
resilience_iso_in() { # <seconds>
  local now
  now=$(log_epoch)
  date -u -d "@$(awk -v n="$now" -v s="$1" 'BEGIN { printf "%.3f", n + s }')" +%Y-%m-%dT%H:%M:%S.%3NZ
}

# resilience_pause_until <epoch> <reason>: no spawning before then (state/pause.json).
resilience_pause_until() { # <epoch> <reason>
  local file="${CFG[STATE_DIR]}/pause.json"
  jq -n --argjson until "$1" --arg reason "$2" --arg at "$(log_now)" \
    '{until_epoch: $until, reason: $reason, paused_at: $at}' >"$file.tmp" && mv -f "$file.tmp" "$file"
  log_audit loop.paused --argjson until_epoch "$1" --arg reason "$2"
}

# resilience_paused: true while state/pause.json names a time still to come.
resilience_paused() {
  local file="${CFG[STATE_DIR]}/pause.json" until now
  [[ -f "$file" ]] || return 1
  until=$(jq -r '.until_epoch // 0' "$file" 2>/dev/null) || return 1
  now=$(log_epoch)
  awk -v u="$until" -v n="$now" 'BEGIN { exit !(u > n) }'
}
