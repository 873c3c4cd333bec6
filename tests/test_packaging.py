"""The wheel built from this repository carries everything a project needs (migrations,
templates, static files, py.typed) and works in a fresh project with nothing else from here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        cwd=out,
        capture_output=True,
    )
    (built,) = out.glob("wsguard-*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "wsguard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    missing = [path for path in tracked if path not in names]
    assert not missing
    assert "wsguard/migrations/0001_initial.py" in names
    assert "wsguard/py.typed" in names
    assert not [n for n in names if n.startswith(("demo_project/", "tests/", "bench/"))]


def test_a_fresh_project_migrates_and_checks_with_the_wheel_alone(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    project = tmp_path / "project"
    project.mkdir()
    (project / "freshsettings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "fresh"
            INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                              "channels", "wsguard"]
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
            WSGUARD = {"ALLOWED_ORIGINS": ["https://app.example.com"]}
            USE_TZ = True
            """
        )
    )
    script = (
        "import django, wsguard; from django.core.management import call_command; django.setup(); "
        f"assert wsguard.__file__.startswith({str(site)!r}), wsguard.__file__; "
        "call_command('migrate', verbosity=0); call_command('check', fail_level='ERROR'); "
        "from wsguard.models import TrustedOrigin; print(TrustedOrigin.objects.count())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env={"PYTHONPATH": f"{site}:{project}", "DJANGO_SETTINGS_MODULE": "freshsettings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0"
