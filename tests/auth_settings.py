"""tests.settings plus WSGUARD overrides from the environment (JSON in WSGUARD_TEST_OVERRIDES), for
daphne subprocesses in the authentication tests (a short TICKET_TTL, say)."""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import WSGUARD as _BASE

WSGUARD = {**_BASE, **json.loads(os.environ.get("WSGUARD_TEST_OVERRIDES", "{}"))}
