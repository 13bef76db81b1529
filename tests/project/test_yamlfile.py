"""Safe YAML: plain data only, every key's line, duplicate keys and alias bombs refused."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from engine.project.yamlfile import MAX_DEPTH, MAX_VALUES, YamlProblems, parse_yaml, read_yaml


def problems(text: str) -> list[str]:
    with pytest.raises(YamlProblems) as caught:
        parse_yaml(text, "f.yaml")
    return [str(p) for p in caught.value.problems]


def test_every_key_path_remembers_its_line() -> None:
    doc = parse_yaml(
        "shop:\n  name: Nakshi Ghor\nsending:\n  smtp:\n    port: 8025\ncampaigns:\n  - welcome\n"
        "  - {name: x}\n",
        "config.yaml",
    )
    assert doc.data["sending"]["smtp"]["port"] == 8025
    assert doc.line(("shop", "name")) == 2
    assert doc.line(("sending", "smtp", "port")) == 5
    assert doc.line(("campaigns", 0)) == 7
    assert doc.line(("campaigns", 1, "name")) == 8
    # A key that was never written points at its nearest written parent.
    assert doc.line(("sending", "smtp", "host")) == 4
    assert doc.line(("nowhere",)) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("at: 10:00", "10:00", id="time-unquoted"),
        pytest.param("at: 9:30", "9:30", id="time-one-digit-hour"),
        pytest.param("at: 190:20:30", "190:20:30", id="sexagesimal-int"),
        pytest.param("at: 1:30.5", "1:30.5", id="sexagesimal-float"),
        pytest.param("at: 8025", 8025, id="int"),
        pytest.param("at: -3", -3, id="negative-int"),
        pytest.param("at: 0x1F", 31, id="hex"),
        pytest.param("at: 0.01", 0.01, id="float"),
        pytest.param("at: 1e3", "1e3", id="yaml-1.1-needs-a-dot-for-floats"),
        pytest.param("at: true", True, id="bool"),
        pytest.param("at: False", False, id="bool-capitalised"),
        pytest.param("at: yes", "yes", id="yaml-1.1-yes-is-a-word"),
        pytest.param("at: off", "off", id="yaml-1.1-off-is-a-word"),
        pytest.param("at: 2026-11-27", date(2026, 11, 27), id="date"),
        pytest.param("at: ~", None, id="null"),
    ],
)
def test_scalars_are_read_as_a_marketer_means_them(text: str, expected: object) -> None:
    assert parse_yaml(text, "f.yaml").data == {"at": expected}


def test_on_is_a_key_not_a_boolean() -> None:
    """`on: delivered` (the nth_order trigger's key) is read as written."""
    doc = parse_yaml("trigger:\n  type: nth_order\n  on: delivered\n  n: [2]\n", "f.yaml")
    assert doc.data == {"trigger": {"type": "nth_order", "on": "delivered", "n": [2]}}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("name: !!python/object:os.system\n  x: 1\n", id="python-object"),
        pytest.param("name: !!python/object/apply:os.system ['ls']\n", id="python-apply"),
        pytest.param("name: !!python/name:os.system ''\n", id="python-name"),
        pytest.param("name: !custom thing\n", id="local-tag"),
    ],
)
def test_only_plain_data_is_allowed(text: str) -> None:
    (problem,) = problems(text)
    assert problem.startswith("f.yaml:1: invalid YAML: ")
    assert problem.endswith(": only plain YAML data is allowed")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "name: x\n  bad: [\n",
            "f.yaml:2: invalid YAML: mapping values are not allowed",
            id="indent",
        ),
        pytest.param("a: [1, 2\nb: 3\n", "f.yaml:2: invalid YAML: ", id="unclosed-list"),
        pytest.param("a: 1\n\tb: 2\n", "f.yaml:2: invalid YAML: ", id="tab"),
        pytest.param('a: "unterminated\n', "f.yaml:2: invalid YAML: ", id="open-quote"),
        pytest.param("a: 1\n---\nb: 2\n", "f.yaml:2: invalid YAML: ", id="two-documents"),
        pytest.param("a: *nowhere\n", "f.yaml:1: invalid YAML: ", id="unknown-alias"),
        pytest.param(
            "confirmed: {eid: 2027-13-10}\n",
            "f.yaml:1: invalid YAML: '2027-13-10' is not a valid date: month must be in 1..12",
            id="impossible-date",
        ),
        pytest.param(
            "confirmed: {eid: 2027-02-30}\n",
            "f.yaml:1: invalid YAML: '2027-02-30' is not a valid date: day is out of range for month",
            id="february-30",
        ),
    ],
)
def test_malformed_yaml_names_the_line(text: str, expected: str) -> None:
    (problem,) = problems(text)
    assert problem.startswith(expected)


def test_duplicate_keys_are_each_reported_with_their_path() -> None:
    text = "tick_seconds: 60\nsending:\n  smtp:\n    port: 25\n    port: 8025\ntick_seconds: 30\n"
    assert problems(text) == [
        "f.yaml:6: tick_seconds: duplicate key",
        "f.yaml:5: sending.smtp.port: duplicate key",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 9)
            ),
            f"f.yaml:1: the file expands to more than {MAX_VALUES} values",
            id="billion-laughs",
        ),
        pytest.param(
            "a: &a [*a]\n", f"f.yaml:1: values nested more than {MAX_DEPTH} deep", id="itself"
        ),
        pytest.param(
            "a: &a {b: *a}\n", f"f.yaml:1: values nested more than {MAX_DEPTH} deep", id="mapping"
        ),
    ],
)
def test_alias_bombs_are_refused_quickly(text: str, expected: str) -> None:
    started = time.perf_counter()
    (problem,) = problems(text)
    assert time.perf_counter() - started < 2
    assert problem.startswith(expected)


def test_a_few_aliases_are_fine() -> None:
    doc = parse_yaml("base: &b {max: 3, per: 7d}\ncap: *b\n", "f.yaml")
    assert doc.data["cap"] == {"max": 3, "per": "7d"}
    assert doc.line(("cap", "max")) == 1


def test_an_empty_file_is_no_data() -> None:
    assert parse_yaml("# only a comment\n", "f.yaml").data is None


def test_reading_a_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: নকশি ঘর\n", encoding="utf-8")
    assert read_yaml(good, "good.yaml").data == {"name": "নকশি ঘর"}
    with pytest.raises(YamlProblems, match=r"^gone.yaml: cannot read the file: "):
        read_yaml(tmp_path / "gone.yaml", "gone.yaml")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            "a: 1\nname: Café\n".encode("latin-1"),
            "f.yaml:2: invalid UTF-8 at column 10: byte 0xe9 (save the file as UTF-8)",
            id="latin-1",
        ),
        pytest.param(
            "name: x\nstory: ঘর ".encode() + b"\xff\n",  # columns count letters, not bytes
            "f.yaml:2: invalid UTF-8 at column 11: byte 0xff (save the file as UTF-8)",
            id="after-bengali",
        ),
        pytest.param(
            b"a: 1\n\xe0\xa6: 2\n",  # a multi-byte letter cut short
            "f.yaml:2: invalid UTF-8 at column 1: byte 0xe0 (save the file as UTF-8)",
            id="cut-letter",
        ),
    ],
)
def test_bad_utf8_names_line_and_column(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(data)
    with pytest.raises(YamlProblems) as caught:
        read_yaml(path, "f.yaml")
    assert [str(p) for p in caught.value.problems] == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "a: 1\nb: x\x07y\n",
            "f.yaml:2: invalid YAML: column 5: a control character (U+0007) is not allowed",
            id="bell",
        ),
        pytest.param(
            "name: নকশি ঘর\nb: \x00\n",
            "f.yaml:2: invalid YAML: column 4: a control character (U+0000) is not allowed",
            id="nul-after-bengali",
        ),
        pytest.param(
            "a: 1\n# a comment \x1b[0m\n",
            "f.yaml:2: invalid YAML: column 13: a control character (U+001B) is not allowed",
            id="escape-in-comment",
        ),
        pytest.param(
            'a: 1\nb: "quoted \x08"\n',
            "f.yaml:2: invalid YAML: column 12: a control character (U+0008) is not allowed",
            id="in-quotes",
        ),
    ],
)
def test_control_characters_name_line_and_column(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_tabs_newlines_and_a_byte_order_mark_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes('\ufeffa: 1\r\nb: "x\ty"\r\n'.encode())
    assert read_yaml(path, "f.yaml").data == {"a": 1, "b": "x\ty"}


TAB = "a tab at column {}; YAML is indented with spaces, never tabs"


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        pytest.param("name: x\ntrigger:\n\tdays_before: 3\n", 3, 1, id="indented-with-a-tab"),
        pytest.param("trigger:\n  at: '10:00'\n\tdays_before: 3\n", 3, 1, id="tab-after-spaces"),
        pytest.param("offers:\n  - {sku: A}\n  -\t{sku: B}\n", 3, 4, id="tab-after-a-dash"),
        pytest.param("name: x\n\t\ntrigger: {at: 1}\n", 2, 1, id="tab-on-a-blank-line"),
    ],
)
def test_a_tab_is_named_with_its_line(text: str, line: int, column: int) -> None:
    assert problems(text) == [f"f.yaml:{line}: invalid YAML: {TAB.format(column)}"]
