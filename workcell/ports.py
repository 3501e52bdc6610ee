"""Ports on 127.0.0.1 for the servers a command or a test starts (Prefect, PostgreSQL).

A port found free may be taken before the server binds it; a server that fails to
start says so, and ``port_taken`` tells whether that was why.
"""

from __future__ import annotations

import socket

from workcell.wire import HOST  # the one address every local server listens on


def free_port() -> int:
    """A port on 127.0.0.1 that no one listens on now (the system's choice)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_taken(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 cannot be bound now (someone has it)."""
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False
