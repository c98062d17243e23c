#!/usr/bin/env bash
# Summary: installs the harness (its venv, the pinned CLI, the dashboard's charts), a
# state directory, a commented harness.conf, the systemd units and a logrotate file;
# --uninstall removes what an install wrote, never the state or the configuration.
# Usage: packaging/install.sh [options]        (make install / make uninstall PREFIX=...)
#   --prefix DIR        where the harness goes (default /opt/harness)
#   --state-dir DIR     the state directory, made mode 0700 (default /var/lib/harness)
#   --config-dir DIR    harness.conf and harness.env (default /etc/harness); an existing
#                       harness.conf is kept, never overwritten
#   --repo DIR          the repository the agents work on (REPO_DIR; default: set it later)
#   --user NAME         who the units run as (default: the invoking user, or sudo's;
#                       root only when named: an agent should not run as root)
#   --unit-dir DIR      systemd units (default /etc/systemd/system); "" for none
#   --logrotate-dir DIR logrotate's file (default /etc/logrotate.d); "" for none
#   --uninstall         remove what the install at --prefix wrote (its manifest says what)
# The venv's packages come from PyPI and the CLI from npm: both must be reachable.
set -euo pipefail

SRC=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/harness STATE_DIR=/var/lib/harness CONFIG_DIR=/etc/harness REPO_DIR=""
UNIT_DIR=/etc/systemd/system LOGROTATE_DIR=/etc/logrotate.d RUN_USER="" UNINSTALL=0
MANIFEST_NAME=.install-manifest
# what goes into PREFIX: the harness itself, no tests, no caches
PARTS=(loop.sh lib scripts bootstrap docs packaging Makefile requirements.txt README.md)

die() { echo "install: $*" >&2; exit "${2:-1}"; }
say() { echo "install: $*"; }

while (($#)); do
  case "$1" in
    --prefix | --state-dir | --config-dir | --repo | --user | --unit-dir | --logrotate-dir)
      (($# >= 2)) || die "$1 needs a value" 2
      case "$1" in
        --prefix) PREFIX=$2 ;; --state-dir) STATE_DIR=$2 ;; --config-dir) CONFIG_DIR=$2 ;;
        --repo) REPO_DIR=$2 ;; --user) RUN_USER=$2 ;; --unit-dir) UNIT_DIR=$2 ;;
        --logrotate-dir) LOGROTATE_DIR=$2 ;;
      esac
      shift 2 ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h | --help) sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown option: $1 (see --help)" 2 ;;
  esac
done
for v in PREFIX STATE_DIR CONFIG_DIR REPO_DIR UNIT_DIR LOGROTATE_DIR; do
  [[ -z "${!v}" && "$v" != PREFIX && "$v" != STATE_DIR && "$v" != CONFIG_DIR ]] && continue
  [[ "${!v}" == /* ]] || die "${v} must be an absolute path, got '${!v}'" 2
  # systemd splits ReadWritePaths at spaces and expands % in units
  [[ "${!v}" =~ ^[A-Za-z0-9_./+-]+$ ]] || die "${v} may hold letters, digits and _ . / + - only, got '${!v}'" 2
done
[[ "$(realpath -m -- "$PREFIX")" != "$(realpath -m -- "$SRC")" ]] ||
  die "$PREFIX is this copy of the harness: install from a checkout of it (nothing was changed)" 2
for v in STATE_DIR CONFIG_DIR; do
  case "$(realpath -m -- "${!v}")/" in
    "$(realpath -m -- "$PREFIX")"/*) die "${v} must not be inside PREFIX (uninstall removes PREFIX)" 2 ;;
  esac
done
[[ -z "$REPO_DIR" || "$REPO_DIR" == /* ]] || die "--repo must be an absolute path, got '$REPO_DIR'" 2
MANIFEST="$PREFIX/$MANIFEST_NAME"

uninstall() {
  [[ -f "$MANIFEST" ]] || die "no install at $PREFIX (no $MANIFEST): nothing removed"
  local path unit
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    for unit in harness.service harness-drain.timer harness-drain.service; do
      grep -qx ".*/$unit" "$MANIFEST" || continue
      if systemctl disable --now "$unit" 2>/dev/null; then say "stopped and disabled $unit"; fi
    done
  fi
  while IFS= read -r path; do
    [[ -n "$path" ]] || continue
    case "$path" in
      "$PREFIX" | "$PREFIX"/*) ;;
      *) [[ -f "$path" ]] || continue ;; # outside PREFIX: only the files an install wrote
    esac
    rm -rf -- "$path" && say "removed $path"
  done <"$MANIFEST"
  rm -rf -- "$PREFIX" # it holds nothing else: STATE_DIR and CONFIG_DIR were refused inside it
  say "removed $PREFIX; the state directory and harness.conf are never removed"
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then systemctl daemon-reload || true; fi
}

# render <template> <out>: the template with its @KEY@ values filled in.
render() {
  local text
  text=$(<"$1")
  local key
  for key in PREFIX STATE_DIR CONFIG_DIR CONFIG REPO_DIR RUN_USER RUN_GROUP RUN_HOME; do
    local value=${!key}
    # the units' ReadWritePaths need a path: without --repo, the state directory (set REPO_DIR later)
    [[ "$key" != REPO_DIR || -n "$value" ]] || value=$STATE_DIR
    local name=${key#RUN_}
    text=${text//@"$name"@/$value}
  done
  printf '%s\n' "$text" >"$2"
  chmod 0644 "$2"
  echo "$2" >>"$MANIFEST"
}

install_tree() {
  [[ ! -e "$PREFIX" || -f "$MANIFEST" || -z "$(ls -A "$PREFIX")" ]] ||
    die "$PREFIX exists and holds no earlier install of the harness: choose an empty --prefix"
  mkdir -p "$PREFIX"
  local part
  for part in "${PARTS[@]}"; do
    rm -rf -- "${PREFIX:?}/$part"
    cp -R -- "$SRC/$part" "$PREFIX/$part"
  done
  find "$PREFIX" -name __pycache__ -prune -exec rm -rf {} +
  echo "$PREFIX" >"$MANIFEST"
  say "the harness: $PREFIX"
  # the venv (runtime packages only), the pinned CLI and the dashboard's charts
  make -C "$PREFIX" --no-print-directory setup REQUIREMENTS=requirements.txt >/dev/null ||
    die "make setup in $PREFIX failed (PyPI and npm must be reachable); the tree is in place, run it again"
  say "its venv, CLI $("$PREFIX/.tools/claude/node_modules/.bin/claude" --version 2>/dev/null | head -1) and charts"
}

# install_cli_home: the CLI writes ~/.claude and ~/.claude.json; the unit's
# ProtectHome=read-only leaves them writable only when they exist.
install_cli_home() {
  local dir="$RUN_HOME/.claude" file="$RUN_HOME/.claude.json"
  [[ -d "$dir" ]] || { mkdir -p "$dir" && chmod 0700 "$dir" && say "made $dir"; }
  [[ -e "$file" ]] || { (umask 077 && printf '{}\n' >"$file") && say "made $file"; }
  [[ "$(id -u)" != 0 ]] || chown "$RUN_USER:$RUN_GROUP" "$dir" "$file"
}

install_state_and_config() {
  mkdir -p "$STATE_DIR"
  chmod 0700 "$STATE_DIR"
  [[ "$(id -u)" != 0 ]] || chown "$RUN_USER:$RUN_GROUP" "$STATE_DIR"
  mkdir -p "$CONFIG_DIR"
  if [[ -e "$CONFIG" ]]; then
    say "kept $CONFIG (it exists)"
  else
    local -a values=("STATE_DIR=$STATE_DIR")
    [[ -z "$REPO_DIR" ]] || values+=("REPO_DIR=$REPO_DIR")
    (umask 077 && PYTHONPATH="$PREFIX/lib" "$PREFIX/.venv/bin/python" -m harness.config template "${values[@]}" \
      >"$CONFIG")
    [[ "$(id -u)" != 0 ]] || chown "root:$RUN_GROUP" "$CONFIG" && chmod 0640 "$CONFIG"
    say "wrote $CONFIG"
  fi
  say "the state directory: $STATE_DIR (mode 0700, $RUN_USER's)"
}

install_units() {
  if [[ -n "$UNIT_DIR" ]]; then
    mkdir -p "$UNIT_DIR"
    local unit
    for unit in harness.service harness-drain.service harness-drain.timer; do
      render "$SRC/packaging/$unit.in" "$UNIT_DIR/$unit"
    done
    say "systemd units in $UNIT_DIR: systemctl daemon-reload && systemctl enable --now harness"
  fi
  if [[ -n "$LOGROTATE_DIR" ]]; then
    mkdir -p "$LOGROTATE_DIR"
    render "$SRC/packaging/logrotate.in" "$LOGROTATE_DIR/harness"
    say "logrotate: $LOGROTATE_DIR/harness"
  fi
}

if ((UNINSTALL)); then
  uninstall
  exit 0
fi
if [[ -z "$RUN_USER" ]]; then
  RUN_USER=${SUDO_USER:-$(id -un)}
  [[ "$RUN_USER" != root ]] || die "the units would run agents as root: name their user with --user (--user root to insist)" 2
fi
id -u "$RUN_USER" >/dev/null 2>&1 || die "no such user: $RUN_USER" 2
RUN_GROUP=$(id -gn "$RUN_USER")
RUN_HOME=$(getent passwd "$RUN_USER" | cut -d: -f6)
[[ -n "$RUN_HOME" ]] || die "$RUN_USER has no home directory"
CONFIG="$CONFIG_DIR/harness.conf"
for tool in make python3 npm git jq flock setsid; do
  command -v "$tool" >/dev/null || die "$tool is required (see scripts/doctor.sh)"
done
install_tree
install_state_and_config
install_cli_home
install_units
say "done; check it with $PREFIX/scripts/doctor.sh --config $CONFIG --user $RUN_USER --env-file $CONFIG_DIR/harness.env"
