"""Header lines built by hand, parsed back with the standard library and with GMime."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import random
import re
import subprocess
import unicodedata
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from engine.deliver.headers import encoded_words, mailbox, unstructured
from tests.conftest import skip_or_fail

SYSTEM_PYTHON = Path("/usr/bin/python3")  # Debian's, with python3-gi and gir1.2-gmime-3.0
ENCODED_WORD = re.compile(r"=\?utf-8\?([bq])\?([^?]*)\?=")

# What our subjects and names are made of: Bengali words, conjuncts, joiners, Bengali and
# ASCII digits, order numbers, money, Latin words and punctuation.
PIECES = (
    "নকশি", "ঘরের", "ফ্ল্যাশ", "সেল:", "আমাদের", "অফার", "আগেভাগে", "দেখুন", "প্রতিষ্ঠানগুলোর",
    "NG-00016-03-এর", "জন্য", "ধন্যবাদ", "১,২৫০.০০৳", "৳1,250.00", "র‍্যাব", "2026", "Nakshi",
    "Ghor-এ", "স্বাগতম,", "ক্ষ্ম", "মধু", "(৫০০", "গ্রাম)", "শুভ", "জন্মদিন,", "রহিমা", "খাতুন", "১২",
)  # fmt: skip
TEXTS = [
    # The welcome series' second subject: GMime read only "আমাদের পণ্য যেভ" of it (its first
    # word ended in base64 padding, and GMime decodes a run of base64 words as one stream).
    "আমাদের পণ্য যেভাবে অনেক দিন ভালো থাকবে",
    "নকশি ঘরের ফ্ল্যাশ সেল: আমাদের অফার আগেভাগে দেখুন",
    "Nakshi Ghor-এ আপনার অর্ডার NG-00016-03-এর জন্য ধন্যবাদ",
    "মধু (৫০০ গ্রাম)-এর দাম কমেছে: আপনার অ্যাকাউন্টে ১,২৫০.০০৳ ফেরত দেওয়া হলো",
    "শেখ ফাতেমা তুজ জোহরা বিনতে আব্দুল্লাহ আল মামুন",
    "মোহাম্মদ আব্দুর রহমান চৌধুরী শাহরিয়ার হোসেন",
    "রহিমা খাতুন",
    "Rahima খাতুন 2",
    "A" + "প্রতিষ্ঠানগুলোর" * 6,  # one ASCII letter, then no room for an unpadded base64 word
    "ক্ষ্ম্য" * 30,  # conjuncts only, no space to break at
    "1 2 " + "আগেভাগে" * 12 + " 3",
    *(
        " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 24)))
        for rng in [random.Random(2047)]
        for _ in range(300)
    ),
]


def decode(word: str) -> bytes:
    """The bytes one encoded word holds."""
    match = ENCODED_WORD.fullmatch(word)
    assert match, word
    kind, text = match.groups()
    if kind == "b":
        return base64.b64decode(text, validate=True)
    text = text.replace("_", " ")
    return re.sub(r"=([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text).encode("latin-1")


# ---------------------------------------------------------------- how the words are cut


@pytest.mark.parametrize("at_spaces", [False, True], ids=["subject", "name"])
def test_encoded_words_hold_whole_letters_and_need_no_padding(at_spaces: bool) -> None:
    for text in TEXTS:
        words = encoded_words(text, len("Subject: "), at_spaces=at_spaces)
        assert len("Subject: ") + len(words[0]) <= 78 and all(len(w) <= 77 for w in words)
        pieces = [decode(word).decode("utf-8") for word in words]  # each whole UTF-8
        assert "".join(pieces) == text
        for word, piece, after in zip(words, pieces, pieces[1:], strict=False):
            assert not word.endswith("=?="), f"a base64 word before the last is padded: {word}"
            assert unicodedata.category(after[0])[0] != "M", (piece, after)  # a vowel sign
            assert unicodedata.combining(piece[-1]) != 9, (piece, after)  # a virama
            assert "\u200d" not in (piece[-1], after[0]), (piece, after)  # a joiner


def test_ascii_before_a_long_bengali_run_is_written_in_q() -> None:
    text = "A" + "প্রতিষ্ঠানগুলোর" * 6
    words = encoded_words(text, len("Subject: "))
    assert any(word.startswith("=?utf-8?q?") for word in words)
    assert b"".join(decode(w) for w in words).decode("utf-8") == text
    # Where base64 fits, base64 it is (a third the size of Q for Bengali).
    assert all(w.startswith("=?utf-8?b?") for w in encoded_words(TEXTS[0], len("Subject: ")))


@pytest.mark.parametrize(
    "name",
    [
        "মোহাম্মদ আব্দুর রহমান চৌধুরী শাহরিয়ার হোসেন",
        "শেখ ফাতেমা তুজ জোহরা বিনতে আব্দুল্লাহ আল মামুন",
        "Rahima Khatun রহিমা খাতুন NG-00016-03 আব্দুল্লাহ আল মামুন",
    ],
)
def test_a_long_name_breaks_between_its_words(name: str) -> None:
    pieces = [decode(w).decode("utf-8") for w in encoded_words(name, len("To: "), at_spaces=True)]
    assert len(pieces) > 1
    for piece, after in pairwise(pieces):
        assert piece.endswith(" ") or after.startswith(" "), (piece, after)


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


def test_bengali_subjects_parse_back_with_the_standard_library() -> None:
    for text in TEXTS:
        raw = unstructured("Subject", text) + "\r\n\r\nbody"
        parsed = email.message_from_bytes(raw.encode("ascii"), policy=email.policy.default)
        assert parsed["Subject"] == text


# ---------------------------------------------------------------- GMime

# Reads each message with GMime, as mu, notmuch, Evolution and Geary do: the subject and the
# display name from the parsed message, and the raw subject through header_decode_text.
GMIME_READER = """
import json, sys
import gi
gi.require_version("GMime", "3.0")
from gi.repository import GMime
GMime.init()
read = []
for raw, subject in json.load(sys.stdin):
    stream = GMime.StreamMem.new_with_buffer(raw.encode("ascii"))
    message = GMime.Parser.new_with_stream(stream).construct_message(None)
    read.append({
        "subject": message.get_subject(),
        "decoded": GMime.utils_header_decode_text(None, subject),
        "name": message.get_to().get_address(0).get_name(),
    })
json.dump(read, sys.stdout)
"""


@pytest.fixture(scope="module")
def gmime() -> Callable[[list[tuple[str, str]]], list[dict[str, str]]]:
    """Read (message, raw subject) pairs with GMime 3 in Debian's python3."""
    probe = "import gi; gi.require_version('GMime', '3.0'); from gi.repository import GMime"
    try:
        found = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=60)
    except OSError:
        found = None
    if found is None or found.returncode != 0:
        skip_or_fail(
            f"GMime 3 is not there for {SYSTEM_PYTHON} "
            "(make mailreaders installs gir1.2-gmime-3.0 and python3-gi)"
        )

    def read(messages: list[tuple[str, str]]) -> list[dict[str, str]]:
        run = subprocess.run(
            [SYSTEM_PYTHON, "-c", GMIME_READER],
            input=json.dumps(messages),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        return list(json.loads(run.stdout))

    return read


def test_gmime_reads_bengali_subjects_and_names_whole(
    gmime: Callable[[list[tuple[str, str]]], list[dict[str, str]]],
) -> None:
    messages = []
    for text in TEXTS:
        subject = unstructured("Subject", text)
        head = [subject, mailbox("To", text, "rahima@example.com"), "MIME-Version: 1.0"]
        raw_subject = subject.removeprefix("Subject: ").replace("\r\n", "")
        messages.append(("\r\n".join([*head, "", "body", ""]), raw_subject))
    wrong = [
        f"{text!r}\n  GMime read: {read!r}"
        for text, read in zip(TEXTS, gmime(messages), strict=True)
        if set(read.values()) != {text}
    ]
    assert not wrong, f"{len(wrong)} of {len(TEXTS)} read wrong:\n" + "\n".join(wrong[:10])
