"""Test settings: the demo project's, with a fast password hasher and test-only apps/routes."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "wsguard-tests-not-secret")

from demo_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost", "app.example.com"]
WSGUARD = {"ALLOWED_ORIGINS": ["https://app.example.com", "https://*.partner.example"]}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"wsguard": {"level": "INFO", "propagate": True}},
}
