# shellcheck shell=bash
# shellcheck disable=SC2034 # NOW_US is read by the scripts that source this
# The clock, without forking: ISO 8601 times for logs and integer microseconds for
# comparisons (the loop never compares times through awk or date). Sourced by
# lib/log.sh, not executed.

# clock_iso [var]: UTC time as ISO 8601 with milliseconds, without forking; into var
# or printed. The loop uses the var form: a command substitution is where bash 5.2
# can mishandle a trapped signal (see lib/wake.sh), so its steady path has none.
clock_iso() { # [var]
  local t=${EPOCHREALTIME:-} s ms out
  if [[ -z "$t" ]]; then
    out=$(date -u +%Y-%m-%dT%H:%M:%S.000Z) # subst-ok: only a bash without EPOCHREALTIME
  else
    s=${t%[.,]*}
    ms=${t#*[.,]}
    TZ=UTC printf -v out '%(%Y-%m-%dT%H:%M:%S)T.%sZ' "$s" "${ms:0:3}"
  fi
  if [[ -n "${1:-}" ]]; then printf -v "$1" '%s' "$out"; else printf '%s\n' "$out"; fi
}

# clock_now: NOW_US, the time in whole microseconds since the epoch (no fork; the
# loop compares times as integers, never through awk or date).
clock_now() {
  local t=${EPOCHREALTIME:-} f
  [[ -n "$t" ]] || t=$(date +%s.%N) # subst-ok: only a bash without EPOCHREALTIME
  t=${t/,/.}
  f="${t#*.}000000"
  NOW_US=$((10#${t%.*} * 1000000 + 10#${f:0:6}))
}

# clock_us <seconds> <var>: a non-negative decimal ("1.5", "30") in whole microseconds.
clock_us() { # <seconds> <var>
  local s=$1 frac=000000
  [[ "$s" =~ ^[0-9]+([.][0-9]*)?$ ]] || s=0
  [[ "$s" == *.* ]] && frac="${s#*.}000000"
  printf -v "$2" '%d' "$((10#${s%%.*} * 1000000 + 10#${frac:0:6}))"
}

# clock_secs <microseconds> [var]: them as seconds with six decimals, into var or printed.
clock_secs() { # <microseconds> [var]
  if [[ -n "${2:-}" ]]; then
    printf -v "$2" '%d.%06d' "$(($1 / 1000000))" "$(($1 % 1000000))"
  else
    printf '%d.%06d\n' "$(($1 / 1000000))" "$(($1 % 1000000))"
  fi
}
