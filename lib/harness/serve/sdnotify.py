"""systemd's notify protocol (sd_notify(3)): datagrams to $NOTIFY_SOCKET.

The loop (lib/notify.sh) sends through its helper coprocess, a process that lives
as long as the loop: systemd accepts a message from a process of the service
(NotifyAccess=all) only while it can still see the sender, which a short-lived
`systemd-notify` does not always give it. The loop keeps the socket's address out
of every child's environment (agents, verify commands, the sidecar): nothing else
of the service can say READY or ping the watchdog for it.
"""

from __future__ import annotations

import socket

_SOCKETS: dict[str, socket.socket] = {}


def address(path: str) -> str | bytes:
    """The socket's address: a path, or an abstract name ('@name')."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    if not path.startswith("/"):
        raise ValueError(f"NOTIFY_SOCKET is neither an absolute path nor an abstract name: {path[:80]!r}")
    return path


def send(path: str, fields: list[str]) -> None:
    """One datagram of newline-separated KEY=VALUE fields. OSError when it cannot be sent."""
    for field in fields:
        if "=" not in field or "\n" in field:
            raise ValueError(f"not one KEY=VALUE line: {field[:80]!r}")
    sock = _SOCKETS.get(path)
    if sock is None:
        sock = _SOCKETS[path] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.sendto("\n".join(fields).encode("utf-8", "replace"), address(path))
