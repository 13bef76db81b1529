"""Header lines built by hand, parsed back with the standard library."""

from __future__ import annotations

import base64
import email
import email.policy

from engine.deliver.headers import encoded_words, mailbox, unstructured


def test_encoded_words_split_on_character_boundaries() -> None:
    text = "ব্ল্যাক ফ্রাইডে: আমাদের অফার আগেভাগে দেখুন " * 3
    words = encoded_words(text, len("Subject: "))
    assert len(words) > 3
    assert all(len(w) <= 78 - len("Subject: ") for w in words[:1])
    assert all(len(w) <= 77 for w in words)
    decoded = "".join(base64.b64decode(w[10:-2]).decode("utf-8") for w in words)
    assert decoded == text


def test_header_builders_parse_back() -> None:
    long_ascii = ("Plain words " * 12).strip()
    subject = unstructured("Subject", long_ascii)
    assert "=?" not in subject and all(len(line) <= 78 for line in subject.split("\r\n"))
    raw = "\r\n".join(
        (
            subject,
            unstructured("X-Padded", " padded "),
            mailbox("To", 'a "b" c', "x@example.com"),
            "",
            "body",
        )
    )
    parsed = email.message_from_bytes(raw.encode(), policy=email.policy.default)
    assert parsed["Subject"] == long_ascii
    assert parsed["X-Padded"] == " padded "
    assert parsed["To"].addresses[0].display_name == 'a "b" c'
