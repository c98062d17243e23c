"""The one reply format of the helper pipe: a line of fields apart by US (0x1f).

bash reads it with `IFS=$'\\x1f' read -r a b c`: unlike a tab, US is no IFS white
space, so an empty field is kept; no field holds US or a newline (they become
spaces). A value that bash passes on to the audit log as JSON goes on a line of
its own, as JSON.
"""

from __future__ import annotations

US = "\x1f"


def line(*fields: object) -> str:
    return US.join(_field(f) for f in fields)


def _field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).replace(US, " ").replace("\n", " ")
