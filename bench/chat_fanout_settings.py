"""Settings for bench/chat_fanout.py: the demo's, with wsguard's per-connection message rate, per-user
socket cap and per-address handshake rate lifted (the benchmark measures fan-out, and all of its
200 clients come from one address), and quiet logs."""

from __future__ import annotations

from demo_project.settings import *  # noqa: F403
from demo_project.settings import WSGUARD

WSGUARD = {**WSGUARD, "MESSAGE_RATE": None, "MAX_SOCKETS_PER_USER": None, "HANDSHAKE_RATE": None}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
