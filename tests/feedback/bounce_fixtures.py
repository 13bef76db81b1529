"""The bounce and complaint reports of tests/fixtures/bounces, made concrete.

Each fixture file has placeholders (`@@VERP@@`, `@@RCPT@@`, `@@MSGID@@`, `@@FROM@@`);
`concrete` fills them in for one message, the way a mail system would have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent.parent / "fixtures" / "bounces"
BOUNCE_ADDRESS = "bounce@bounces.example.com"
SHOP_FROM = "hello@shop.example"


@dataclass(frozen=True)
class Case:
    file: str
    format: str
    expect: dict[str, Any]

    @property
    def raw(self) -> bytes:
        return (FOLDER / self.file).read_bytes()


def cases() -> list[Case]:
    listed = json.loads((FOLDER / "cases.json").read_text("utf-8"))
    return [Case(c["file"], c["format"], c["expect"]) for c in listed]


def concrete(
    case: Case, *, verp: str, recipient: str, message_id: str = "<m1@shop.example>"
) -> bytes:
    text = case.raw.decode("utf-8")
    for placeholder, value in (
        ("@@VERP@@", verp),
        ("@@RCPT@@", recipient),
        ("@@MSGID@@", message_id),
        ("@@FROM@@", SHOP_FROM),
    ):
        text = text.replace(placeholder, value)
    return text.encode("utf-8")
