"""Migrations run while executions run, and workers of the previous release keep working on
the schema a new release migrated (docs/operations.md, "Upgrades and rollback"). So from
0011 on, a migration is an expand: it adds (tables, nullable columns or columns with a
default, indexes) and takes nothing away that the previous release reads or writes. What
takes away (drop, rename, a type change, a new NOT NULL) is a contract migration, named
``NNNN_contract_<what>.sql``, shipped one release after the expand whose code stopped using
what it removes, and naming that migration in its first comment.

The check reads the SQL text: comments and quoted strings are set aside, then each
statement is matched against what an expand may not do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backends.postgres.migrate import load_migrations

MIGRATIONS = Path(__file__).resolve().parents[2] / "backends" / "postgres" / "migrations"
FIRST_CHECKED = 11  # 0001-0010 came before the policy

# What an expand migration may not do, and why (the previous release still runs on it).
FORBIDDEN = [
    (re.compile(r"\bDROP\b"), "drops what the previous release may still read or write"),
    (re.compile(r"\bRENAME\b"), "renames what the previous release names"),
    (
        re.compile(r"\bALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE\b"),
        "changes a column's type under the previous release (and rewrites the table under a lock)",
    ),
    (
        re.compile(r"\bSET\s+NOT\s+NULL\b"),
        "makes a column required that the previous release does not write",
    ),
    (re.compile(r"\bTRUNCATE\b"), "empties a table the previous release uses"),
]
ADD_COLUMN = re.compile(r"\bADD\s+(COLUMN\s+)?(IF\s+NOT\s+EXISTS\s+)?(?!CONSTRAINT\b)")
NOT_NULL = re.compile(r"\bNOT\s+NULL\b")
DEFAULT = re.compile(r"\bDEFAULT\b")
CONTRACT = re.compile(r"^\d{4}_contract_")


def statements(sql: str) -> list[str]:
    """The statements of ``sql``, upper-cased, without comments or string contents."""
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.DOTALL)
    sql = re.sub(r"'(?:[^']|'')*'", "''", sql)
    return [" ".join(s.split()).upper() for s in sql.split(";") if s.strip()]


def clauses(statement: str) -> list[str]:
    """The comma-separated clauses of an ALTER TABLE, split outside parentheses."""
    parts, depth, current = [], 0, []
    for char in statement:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def expand_problems(sql: str) -> list[str]:
    """Why ``sql`` is not an expand migration (empty: it is)."""
    problems = []
    for statement in statements(sql):
        for pattern, why in FORBIDDEN:
            if pattern.search(statement):
                problems.append(f"{statement[:80]}: {why}")
        if statement.startswith("ALTER TABLE"):
            for clause in clauses(statement):
                added = ADD_COLUMN.search(clause)
                if added and NOT_NULL.search(clause) and not DEFAULT.search(clause):
                    problems.append(
                        f"{clause.strip()[:80]}: NOT NULL without a DEFAULT, which the "
                        "previous release's inserts do not give"
                    )
    return problems


def checked() -> list[Path]:
    found = sorted(MIGRATIONS.glob("*.sql"))
    return [path for path in found if int(path.name[:4]) >= FIRST_CHECKED]


@pytest.mark.parametrize("path", checked(), ids=lambda p: p.name)
def test_a_migration_is_an_expand_unless_named_contract(path: Path) -> None:
    sql = path.read_text(encoding="utf-8")
    if not CONTRACT.match(path.name):
        assert expand_problems(sql) == [], (
            f"{path.name} is not an expand migration; what it takes away belongs in a "
            "NNNN_contract_*.sql one release later (docs/operations.md, Upgrades and rollback)"
        )
        return
    first = sql.splitlines()[0] if sql else ""
    named = re.findall(r"\b(\d{4})\b", first)
    numbers = {m.version[:4] for m in load_migrations(MIGRATIONS)}
    assert named and all(n in numbers and n < path.name[:4] for n in named), (
        f"{path.name}: a contract migration's first line names the earlier expand migration "
        "whose release stopped using what it removes (-- Contract of 0011: ...)"
    )


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("ALTER TABLE tasks DROP COLUMN held;", "drops"),
        ("DROP INDEX tasks_held;", "drops"),
        ("ALTER TABLE tasks RENAME COLUMN key TO url;", "renames"),
        ("ALTER TABLE tasks ALTER COLUMN key TYPE varchar(100);", "type"),
        ("ALTER TABLE tasks ALTER COLUMN task SET NOT NULL;", "makes a column required"),
        ("ALTER TABLE tasks ADD COLUMN shard int NOT NULL;", "NOT NULL without a DEFAULT"),
        ("ALTER TABLE t ADD COLUMN a int, ADD b text NOT NULL;", "NOT NULL without a DEFAULT"),
        ("TRUNCATE claims;", "empties"),
    ],
)
def test_the_check_catches_what_breaks_the_previous_release(sql: str, problem: str) -> None:
    [found] = expand_problems(sql)
    assert problem in found


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE shards (id text PRIMARY KEY, n bigint NOT NULL);",
        "ALTER TABLE tasks ADD COLUMN shard int NOT NULL DEFAULT 0, ADD COLUMN note text;",
        "CREATE INDEX tasks_x ON tasks (execution_id) WHERE outcome IS NULL;",
        "ALTER TABLE tasks ADD CONSTRAINT c CHECK (depth >= 0) NOT VALID;",
        "-- we will DROP this later\nCOMMENT ON TABLE tasks IS 'do not DROP';",
    ],
)
def test_additions_pass(sql: str) -> None:
    assert expand_problems(sql) == []
