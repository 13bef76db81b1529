"""The shop's project: config.yaml, campaign and segment files, validated once, at load.

`yamlfile` reads YAML safely and remembers where every key was written; `config` holds
the frozen models of the files and the validated value types a marketer types
(durations, times of day, locales, timezones, money, percentages); `loader` builds one
`Project` and reports every problem with file, line and key path: `problems` words the
values a model refuses, `references` finds the names and files that point nowhere.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `config`: `Campaign`, `EMAIL`, `FirstOrder`, `HolidayTrigger`, `Holidays`,
  `LocalText`, `OrderDelivered`, `OrderPlaced`, `PriceDrop`, `Segment`, `SendWindow`,
  `Sending`, `Smtp`, `parse_amount`, `parse_duration`, `parse_email`, `parse_locale`,
  `parse_slug`, `parse_timezone`, `pick_text`
- `loader`: `Project`, `Secrets`, `config_path`, `load_partial`, `load_project`
- `templatesources`: `MAX_TEMPLATE_CHARS`, `TemplateSources`
- `yamlfile`: `KeyPath`, `describe`, `dotted`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .config import (
        EMAIL,
        Campaign,
        FirstOrder,
        Holidays,
        HolidayTrigger,
        LocalText,
        OrderDelivered,
        OrderPlaced,
        PriceDrop,
        Segment,
        Sending,
        SendWindow,
        Smtp,
        parse_amount,
        parse_duration,
        parse_email,
        parse_locale,
        parse_slug,
        parse_timezone,
        pick_text,
    )
    from .loader import Project, Secrets, config_path, load_partial, load_project
    from .templatesources import MAX_TEMPLATE_CHARS, TemplateSources
    from .yamlfile import KeyPath, describe, dotted

__all__ = [
    "EMAIL",
    "MAX_TEMPLATE_CHARS",
    "Campaign",
    "FirstOrder",
    "HolidayTrigger",
    "Holidays",
    "KeyPath",
    "LocalText",
    "OrderDelivered",
    "OrderPlaced",
    "PriceDrop",
    "Project",
    "Secrets",
    "Segment",
    "SendWindow",
    "Sending",
    "Smtp",
    "TemplateSources",
    "config_path",
    "describe",
    "dotted",
    "load_partial",
    "load_project",
    "parse_amount",
    "parse_duration",
    "parse_email",
    "parse_locale",
    "parse_slug",
    "parse_timezone",
    "pick_text",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "Campaign": ".config",
    "EMAIL": ".config",
    "FirstOrder": ".config",
    "HolidayTrigger": ".config",
    "Holidays": ".config",
    "KeyPath": ".yamlfile",
    "LocalText": ".config",
    "MAX_TEMPLATE_CHARS": ".templatesources",
    "OrderDelivered": ".config",
    "OrderPlaced": ".config",
    "PriceDrop": ".config",
    "Project": ".loader",
    "Secrets": ".loader",
    "Segment": ".config",
    "SendWindow": ".config",
    "Sending": ".config",
    "Smtp": ".config",
    "TemplateSources": ".templatesources",
    "config_path": ".loader",
    "describe": ".yamlfile",
    "dotted": ".yamlfile",
    "load_partial": ".loader",
    "load_project": ".loader",
    "parse_amount": ".config",
    "parse_duration": ".config",
    "parse_email": ".config",
    "parse_locale": ".config",
    "parse_slug": ".config",
    "parse_timezone": ".config",
    "pick_text": ".config",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
