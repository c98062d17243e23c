#!/usr/bin/env bash
# Summary: Installs one version of the Claude Code CLI into .tools/ and prints the path of its binary.
# Usage: tests/install-claude.sh VERSION
#
#   VERSION   a release (2.1.332), or "latest" for the newest on the npm registry.
#             The pinned version (the Makefile's CLAUDE_CODE_PINNED) lives in
#             .tools/claude/ (make setup); any other in .tools/claude-VERSION/.
#
# Progress goes to stderr; stdout is the binary's path and nothing else, so that
# `bin=$(tests/install-claude.sh latest)` works. Exits 1 when npm cannot resolve or
# install the version, or when the installed binary reports another version.
set -euo pipefail
[[ "${HARNESS_DEBUG:-}" == 1 ]] && PS4='+ ${BASH_SOURCE##*/}:${LINENO}: ' && set -x
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "harness: $*" >&2; exit 1; }
case "${1:-}" in
  -h | --help) sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
  "") echo "harness: usage: tests/install-claude.sh VERSION" >&2; exit 2 ;;
esac
version=$1
if [[ "$version" == latest ]]; then
  version=$(npm view --silent @anthropic-ai/claude-code version) || die "npm cannot tell the newest @anthropic-ai/claude-code"
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "not a release version: $version"
pinned=$(sed -n 's/^CLAUDE_CODE_PINNED := *//p' "$root/Makefile")
dir="$root/.tools/claude-$version"
[[ "$version" == "$pinned" ]] && dir="$root/.tools/claude"
bin="$dir/node_modules/.bin/claude"
if [[ ! -x "$bin" ]]; then
  echo "installing Claude Code $version into ${dir#"$root/"}" >&2
  npm install --silent --no-audit --no-fund --prefix "$dir" "@anthropic-ai/claude-code@$version" >&2 ||
    die "npm could not install @anthropic-ai/claude-code@$version"
fi
said=$("$bin" --version 2>/dev/null) || die "$bin --version failed"
[[ "$said" == "$version "* ]] || die "$bin says it is '$said', not $version"
echo "Claude Code $version: $bin" >&2
printf '%s\n' "$bin"
