"""The version matrix: Django 5.2 LTS, 6.0 and 6.1 on each Python from 3.12 that this machine has, each
running the unit tests and an end-to-end subset on PostgreSQL and Redis (requests through the API, a
real worker process, the files checked against the database). The whole suite runs on the pinned
versions (`make test`); `make matrix` runs this, `.venv/bin/nox -s "tests(python3.12-django5.2)"` one
session. Each session's virtualenv is kept in .nox/ and brought up to date when it runs again.
"""

import shutil
from pathlib import Path

import nox

DJANGO = {"5.2": "Django>=5.2,<6.0", "6.0": "Django>=6.0,<6.1", "6.1": "Django>=6.1,<6.2"}
SUBSET = [
    "tests/test_definitions.py",
    "tests/test_writers.py",
    "tests/test_csv_writer.py",
    "tests/test_api.py",
    "tests/test_admin_export.py",
    "tests/test_background_jobs.py",
    "tests/test_keys.py",
    "tests/test_instant.py",
    "tests/test_schedules.py",
]


def interpreter(version: str) -> str | None:
    """Python `version` as installed by pyenv, else on PATH, else None."""
    pyenv = sorted(Path("~/.pyenv/versions").expanduser().glob(f"{version}.*/bin/python{version}"))
    return str(pyenv[-1]) if pyenv else shutil.which(f"python{version}")


# Every Django on every Python this machine has, but the pinned pair, which `make test` runs whole.
PINNED = ("3.12", "6.1")
COMBINATIONS = [
    nox.param(path, django, id=f"python{python}-django{django}")
    for python in ("3.12", "3.13", "3.14")
    if (path := interpreter(python))
    for django in DJANGO
    if (python, django) != PINNED
]


@nox.session(python=False)
@nox.parametrize(("python", "django"), COMBINATIONS)
def tests(session: nox.Session, python: str, django: str) -> None:
    venv = Path(".nox") / f"{Path(python).name}-django{django}"
    if not (venv / "bin" / "python").exists():
        session.run(python, "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    session.run(*pip, "-r", "requirements-dev.txt")
    session.run(*pip, DJANGO[django])
    session.run(str(venv / "bin" / "python"), "-m", "django", "--version")
    pytest = [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-m", "not browser and not slow"]
    session.run(*pytest, *SUBSET, *session.posargs)
