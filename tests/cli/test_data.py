"""`lifecycle import …` from the command line, on a copy of the shipped project."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from engine.cli import data, main

CUSTOMERS = "id,email,name,marketing_consent\nC1,rahim@example.com,Rahim,yes\nC2,karim@example.com,Karim,no\n"
PRODUCTS = "sku,name,price,stock\nTEA-500G,Tea 500 g,320.00,5\n"
ORDERS = (
    "order_id,customer_id,placed_at,delivered_at,status,sku,quantity,unit_price\n"
    "1001,C1,2026-11-01T10:00:00,,,TEA-500G,2,\n"
    "1002,C2,2026-11-02T10:00:00,,,TEA-500G,1,300\n"
)
BAD_ORDERS = (
    "order_id,customer_id,placed_at,delivered_at,status,sku,quantity,unit_price\n"
    "2001,C1,2026-11-03T10:00:00,,,TEA-500G,1,\n"
    "2002,C1,2026-11-03T11:00:00,,,TEA-500G,two,\n"
    "2003,C9,2026-11-03T12:00:00,,,TEA-500G,1,\n"
)


@pytest.fixture
def project(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped project with its own SQLite file and the sample CSVs beside it."""
    monkeypatch.delenv("LIFECYCLE_DATABASE_URL", raising=False)
    for name, text in (
        ("customers.csv", CUSTOMERS),
        ("products.csv", PRODUCTS),
        ("orders.csv", ORDERS),
        ("bad_orders.csv", BAD_ORDERS),
    ):
        (project_dir / name).write_text(text, encoding="utf-8")
    return project_dir


def lifecycle(project: Path, *args: str) -> Result:
    config = str(project / "config.yaml")
    return CliRunner().invoke(main, [*args, "--config", config], catch_exceptions=False)


def counts(project: Path) -> tuple[int, int, int]:
    with sqlite3.connect(project / "lifecycle.db") as db:
        return tuple(  # type: ignore[return-value]
            db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("customer", "orders", "order_item")
        )


def import_all(project: Path) -> None:
    for kind in ("customers", "products", "orders"):
        result = lifecycle(project, "import", kind, str(project / f"{kind}.csv"))
        assert result.exit_code == 0, result.output


def test_import_prints_what_it_did_and_again_changes_nothing(project: Path) -> None:
    first = lifecycle(project, "import", "customers", str(project / "customers.csv"))
    assert first.exit_code == 0
    assert "customers.csv: 2 rows: 2 created, 0 updated, 0 unchanged" in first.stdout
    import_all(project)
    assert counts(project) == (2, 2, 2)
    again = lifecycle(project, "import", "orders", str(project / "orders.csv"))
    assert (
        "2 rows: 0 orders created, 0 marked delivered, 0 cancelled, 2 already imported"
        in again.stdout
    )
    assert counts(project) == (2, 2, 2)


def test_an_order_cancelled_later_is_counted_when_imported_again(project: Path) -> None:
    import_all(project)
    cancelled = project / "cancelled.csv"
    cancelled.write_text(ORDERS.replace("2026-11-01T10:00:00,,", "2026-11-01T10:00:00,,cancelled"))
    result = lifecycle(project, "import", "orders", str(cancelled))
    assert result.exit_code == 0, result.output
    assert "2 rows: 0 orders created, 0 marked delivered, 1 cancelled, 1 already imported" in (
        result.stdout
    )


def test_bad_rows_exit_2_name_each_line_and_import_nothing(project: Path) -> None:
    import_all(project)
    result = lifecycle(project, "import", "orders", str(project / "bad_orders.csv"))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[:2] == [
        f'error: {project / "bad_orders.csv"}:3: quantity: expected a whole number of 1 or more, got "two"',
        f'error: {project / "bad_orders.csv"}:4: customer_id: unknown customer "C9"',
    ]
    assert "2 bad rows of 3, nothing imported" in lines[2]
    assert counts(project) == (2, 2, 2)


def test_skip_bad_imports_the_good_rows_exits_0_and_warns(project: Path) -> None:
    import_all(project)
    result = lifecycle(project, "import", "orders", str(project / "bad_orders.csv"), "--skip-bad")
    assert result.exit_code == 0
    assert "1 order created" in result.stdout and "2 bad rows skipped" in result.stdout
    assert result.stderr.count("warning: skipped") == 2
    assert counts(project) == (2, 3, 3)


def test_json_output_lists_the_bad_rows(project: Path) -> None:
    import_all(project)
    result = lifecycle(project, "import", "orders", str(project / "bad_orders.csv"), "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert (report["ok"], report["imported"], report["rows"]) == (False, False, 3)
    assert [(e["line"], e["column"]) for e in report["errors"]] == [
        (3, "quantity"),
        (4, "customer_id"),
    ]
    skipped = lifecycle(
        project, "import", "orders", str(project / "bad_orders.csv"), "--json", "--skip-bad"
    )
    report = json.loads(skipped.stdout)
    assert (report["ok"], report["created"], len(report["skipped"])) == (True, 1, 2)


def test_thousands_of_bad_rows_are_counted_in_full_and_listed_in_part(project: Path) -> None:
    """1,500 bad lines: the message counts them all, the terminal lists 100 and says how
    many more, --json lists the first thousand and counts them all."""
    import_all(project)
    lines = [ORDERS.splitlines()[0], "3001,C1,2026-11-03T10:00:00,,,TEA-500G,1,"]
    lines += [f"{4000 + n},C1,2026-11-03T10:00:00,,,TEA-500G,none," for n in range(1500)]
    path = project / "many_bad.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    refused = lifecycle(project, "import", "orders", str(path))
    assert refused.exit_code == 2
    assert refused.stderr.count("error: ") == 100  # the first hundred rows
    assert "… and 1400 more bad rows (see --json)" in refused.stderr
    assert "1500 bad rows of 1501, nothing imported (the first 1000 are listed)" in refused.stderr
    report = json.loads(lifecycle(project, "import", "orders", str(path), "--json").stdout)
    assert (report["bad_rows"], len(report["errors"])) == (1500, 1000)
    skipped = lifecycle(project, "import", "orders", str(path), "--skip-bad")
    assert "1 order created" in skipped.stdout and "1500 bad rows skipped" in skipped.stdout
    assert "… and 1400 more bad rows (see --json)" in skipped.stderr
    assert counts(project) == (2, 3, 3)


def test_wanted_products_are_imported_once_and_bad_rows_named(project: Path) -> None:
    import_all(project)
    wanted = project / "wanted.csv"
    wanted.write_text("customer_id,sku\nC1,TEA-500G\nC2,TEA-500G\n", encoding="utf-8")
    first = lifecycle(project, "import", "wanted", str(wanted))
    assert first.exit_code == 0, first.output
    assert f"{wanted}: 2 rows: 2 recorded, 0 already recorded" in first.stdout
    again = lifecycle(project, "import", "wanted", str(wanted))
    assert "2 rows: 0 recorded, 2 already recorded" in again.stdout
    bad = project / "bad_wanted.csv"
    bad.write_text("customer_id,sku\nC9,TEA-500G\nC1,NOPE\n", encoding="utf-8")
    refused = lifecycle(project, "import", "wanted", str(bad))
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[:2] == [
        f'error: {bad}:2: customer_id: unknown customer "C9"',
        f'error: {bad}:3: sku: unknown product sku "NOPE"',
    ]
    with sqlite3.connect(project / "lifecycle.db") as db:
        assert db.execute("SELECT count(*) FROM product_wanted").fetchone()[0] == 2


def test_a_missing_column_is_one_error_naming_it(project: Path) -> None:
    path = project / "no_email.csv"
    path.write_text("id,name\nC1,Rahim\n", encoding="utf-8")
    result = lifecycle(project, "import", "customers", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f'error: {path}:1: missing required column "email"; found: id, name'
    )


def test_a_missing_file_is_a_usage_error(project: Path) -> None:
    result = lifecycle(project, "import", "customers", str(project / "nope.csv"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_the_installed_command_imports_with_a_bom_file(project: Path) -> None:
    """The real console script, in its own process, as a shop would run it."""
    script = Path(sys.executable).parent / "lifecycle"
    if not script.exists():
        pytest.skip(f"{script} is not installed")
    path = project / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CUSTOMERS.encode("utf-8"))
    env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_DATABASE_URL"}
    done = subprocess.run(
        [str(script), "import", "customers", "excel.csv", "--config", "config.yaml"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "excel.csv: 2 rows: 2 created, 0 updated, 0 unchanged"
    assert counts(project) == (2, 0, 0)


def test_a_large_file_on_a_terminal_gets_a_progress_bar(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(data, "errors", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(data, "PROGRESS_FROM_BYTES", 0)  # every file counts as large
    import_all(project)
    drawn = screen.getvalue()
    assert "orders.csv: checking" in drawn and "orders.csv: writing" in drawn
    assert "2/2" in drawn  # rows done of rows in all


def test_json_output_has_no_progress_bar(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(data, "errors", Console(file=screen, force_terminal=True))
    monkeypatch.setattr(data, "PROGRESS_FROM_BYTES", 0)
    result = lifecycle(project, "import", "customers", str(project / "customers.csv"), "--json")
    assert json.loads(result.stdout)["created"] == 2
    assert screen.getvalue() == ""
