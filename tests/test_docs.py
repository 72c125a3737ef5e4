"""The documents stay true to the code: every app setting documented, no setting
documented that does not exist, and every link between the documents leading somewhere."""

import re

from reports.conf import DEFAULTS
from tests.helpers import ROOT

# Settings of the demo project (project/settings.py), read from its environment, not app settings.
PROJECT_SETTINGS = {"REPORTS_FILE_ROOT", "REPORTS_SIGNED_URL_SECONDS"}


def documented_rows() -> dict[str, str]:
    """The settings table's rows, by the first name in each."""
    rows = {}
    for line in (ROOT / "docs" / "settings.md").read_text().splitlines():
        if line.startswith("| `"):
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]):
                rows[name] = line
    return rows


def test_every_app_setting_is_documented():
    assert sorted(set(DEFAULTS) - set(documented_rows())) == []


def test_no_reports_setting_is_documented_or_offered_that_the_app_does_not_have():
    named = set()
    for path in (ROOT / "docs" / "settings.md", ROOT / ".env.example"):
        named |= set(re.findall(r"\bREPORTS_[A-Z0-9_]+\b", path.read_text()))
    assert sorted(named - set(DEFAULTS) - PROJECT_SETTINGS) == []


def test_every_link_between_the_documents_leads_to_a_file():
    broken = []
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", document.read_text()):
            if not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)} → {target}")
    assert broken == []
