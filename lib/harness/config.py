"""The configuration schema, lib/config.schema, as the Python helpers read it.

The same file gives lib/config.sh its keys, types, defaults and scopes; here it
gives the helpers' defaults (policy.Policy, the sidecar's and the scripts'
options) and docs/configuration.md. An unknown key is an error wherever a value
arrives: harness.conf, HARNESS_<KEY>, --set (lib/config.sh) or --cfg (here).

    PYTHONPATH=lib python3 -m harness.config    # docs/configuration.md's table
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "lib" / "config.schema"
TYPES = ("int", "num", "bool", "str")
SCOPES = ("loop", "helpers", "sidecar")


class ConfigError(ValueError):
    """A configuration problem: one line for a person, exit 2."""


class SchemaError(ConfigError):
    """lib/config.schema itself is malformed."""


class UnknownKeyError(ConfigError):
    """A configuration key the schema does not have, or one this reader does not read."""


class BadValueError(ConfigError):
    """A value that is not of its key's type."""


@dataclass(frozen=True)
class Key:
    name: str
    type: str
    default: str  # as written, with {root} replaced
    scope: str
    help: str


def parse(text: str, root: Path = ROOT) -> dict[str, Key]:
    """KEY | TYPE | DEFAULT | SCOPE | HELP lines; '#' comments and blank lines skipped."""
    keys: dict[str, Key] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|", 4)]
        if len(parts) != 5 or parts[1] not in TYPES or parts[3] not in SCOPES or not parts[4] or parts[0] in keys:
            raise SchemaError(f"{SCHEMA_PATH}:{n}: expected KEY | TYPE | DEFAULT | SCOPE | HELP, once per key")
        name, kind, default, scope, help_text = parts
        default = "" if default == '""' else default.replace("{root}", str(root))
        keys[name] = Key(name, kind, default, scope, help_text)
    return keys


@functools.cache
def schema() -> dict[str, Key]:
    return parse(SCHEMA_PATH.read_text(encoding="utf-8"))


def key(name: str) -> Key:
    try:
        return schema()[name]
    except KeyError:
        raise UnknownKeyError(f"unknown configuration key {name} (not in lib/config.schema)") from None


def convert(name: str, raw: str) -> Any:
    """A value of the key's type: int, float, or the string itself (bool stays
    "true"/"false", as lib/config.sh normalizes it)."""
    kind = key(name).type
    try:
        if kind == "int":
            return int(float(raw))
        if kind == "num":
            return float(raw)
    except ValueError:
        raise BadValueError(f"{name} must be {'a whole number' if kind == 'int' else 'a number'}, got {raw!r}") from None
    return raw


def default(name: str) -> Any:
    return convert(name, key(name).default)


def markdown() -> str:
    """docs/configuration.md's table of keys."""
    lines = ["| key | type | default | scope | meaning |", "|---|---|---|---|---|"]
    for k in schema().values():
        shown = f"`{k.default.replace(str(ROOT), '<harness>')}`" if k.default else "(empty)"
        lines.append(f"| `{k.name}` | {k.type} | {shown} | {k.scope} | {k.help} |")
    return "\n".join(lines) + "\n"


def template(values: dict[str, str]) -> str:
    """A commented harness.conf: the given keys set, every other key commented out at
    its default, each with its help; secrets are never written (set them in the
    environment file)."""
    out = ["# harness.conf: KEY=VALUE lines; '#' starts a comment. Every key, its default and",
           "# what it does; uncomment a line to change it. docs/configuration.md says more.",
           "# Keep secrets (DATABASE_URL with a password, SERVE_TOKEN) out of this file: put",
           "# them in the environment file beside it (HARNESS_DATABASE_URL=...), mode 0600.", ""]
    for k in schema().values():
        if k.name in values:
            convert(k.name, values[k.name])
        out.append(f"# {k.help}")
        out.append(f"{k.name}={values[k.name]}" if k.name in values else f"# {k.name}={k.default}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["template"]:  # python -m harness.config template KEY=VALUE...
        pairs = dict(arg.split("=", 1) for arg in sys.argv[2:])
        for name in pairs:
            key(name)
        print(template(pairs), end="")
    else:
        print(markdown(), end="")
