"""The report registry: slug -> Report class, filled by `@register` in apps' reports.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .definitions import Report


class AlreadyRegistered(Exception):
    pass


class NotRegistered(LookupError):
    pass


_registry: dict[str, type[Report]] = {}


def register(report_class: type[Report]) -> type[Report]:
    """Class decorator: make a Report available under its slug."""
    slug = report_class.slug
    if not slug:
        raise ValueError(f"{report_class.__name__} has no slug.")
    if slug in _registry and _registry[slug] is not report_class:
        raise AlreadyRegistered(f"A report with slug {slug!r} is already registered.")
    # its declaration is checked by `manage.py check` (reports.checks)
    _registry[slug] = report_class
    return report_class


def unregister(slug: str) -> None:
    _registry.pop(slug, None)


def is_registered(slug: str) -> bool:
    return slug in _registry


def get_report(slug: str) -> Report:
    try:
        return _registry[slug]()
    except (KeyError, TypeError):
        raise NotRegistered(slug) from None


def report_classes() -> list[type[Report]]:
    return [cls for _, cls in sorted(_registry.items())]


def all_reports() -> list[Report]:
    return [cls() for _, cls in sorted(_registry.items())]
