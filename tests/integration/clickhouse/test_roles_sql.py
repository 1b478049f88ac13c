"""deploy/clickhouse/roles.sql, the read-only Grafana user, parsed by ClickHouse itself.

chDB refuses CREATE ROLE/USER (it has no access storage), so the file cannot be run
here. What it can do is parse it: ``formatQuery`` runs ClickHouse's own parser on a
statement without executing it, so a typo in a keyword, a privilege or an authentication
method fails this test, as it would fail the administrator's ``clickhouse-client``. The
settings of the profile are checked against ``system.settings`` (the parser takes any
name there), and the grants must stay read-only: SELECT on the database, and the role.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sinks.clickhouse import ClickHouseSink

ROLES_SQL = Path(__file__).resolve().parents[3] / "deploy" / "clickhouse" / "roles.sql"


def statements(text: str) -> list[str]:
    """The file as the README's ``sed`` leaves it, split into its statements."""
    text = text.replace("{database}", "creatorpulse").replace("{password}", "a-password")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def parsed(sink: ClickHouseSink, statement: str) -> str:
    """ClickHouse's canonical form of ``statement``; raises on a syntax error."""
    with sink.locked_client() as client:
        rows = client.query("SELECT formatQuery(%(q)s)", parameters={"q": statement}).result_rows
    return str(rows[0][0])


def profile_settings(statement: str) -> list[str]:
    """The setting names of a canonical CREATE SETTINGS PROFILE statement."""
    _, _, settings = statement.rpartition(" SETTINGS ")  # not CREATE SETTINGS PROFILE
    return re.findall(r"(?:^|, )(\w+) =", settings)


def unknown_settings(sink: ClickHouseSink, names: list[str]) -> set[str]:
    with sink.locked_client() as client:
        known = {
            str(r[0])
            for r in client.query(
                "SELECT name FROM system.settings WHERE name IN %(names)s",
                parameters={"names": names},
            ).result_rows
        }
    return set(names) - known


def test_roles_sql_parses_and_stays_read_only(clickhouse_sink: ClickHouseSink) -> None:
    text = ROLES_SQL.read_text(encoding="utf-8")
    found = statements(text)
    assert not [s for s in found if "{" in s], "a placeholder the README's sed does not fill"
    canonical = [parsed(clickhouse_sink, s) for s in found]

    profiles = [s for s in canonical if s.startswith("CREATE SETTINGS PROFILE")]
    assert len(profiles) == 1
    names = profile_settings(profiles[0])
    assert "readonly" in names
    assert unknown_settings(clickhouse_sink, names) == set()

    grants = [s for s in canonical if s.startswith("GRANT ")]
    assert "GRANT SELECT ON creatorpulse.* TO creatorpulse_reader" in grants
    # Read-only: a privilege grant is SELECT on the database; any other grant is a role.
    for grant in grants:
        what = grant.removeprefix("GRANT ").split(" TO ")[0]
        assert what == "SELECT ON creatorpulse.*" or re.fullmatch(r"\w+", what), grant
    assert any(s.startswith("CREATE USER IF NOT EXISTS creatorpulse_grafana") for s in canonical)


@pytest.mark.parametrize(
    "typo",
    [
        "CREATE ROLE IF NOT EXIST creatorpulse_reader",
        "GRANT SELECT ON creatorpulse.* TOO creatorpulse_reader",
        "CREATE USER u IDENTIFIED WITH sha256_pasword BY 'p'",
        "CREATE SETTINGS PROFILE p SETTINGS max_execution_time = 60 CHANGEABLE_IN_READONY",
        "SET DEFAULT ROLES creatorpulse_reader TO creatorpulse_grafana",
    ],
)
def test_a_typo_fails_the_parse(clickhouse_sink: ClickHouseSink, typo: str) -> None:
    with pytest.raises(Exception, match="Syntax error"):
        parsed(clickhouse_sink, typo)


def test_a_misspelled_setting_is_caught(clickhouse_sink: ClickHouseSink) -> None:
    # The parser takes any setting name in a profile; system.settings does not.
    statement = parsed(
        clickhouse_sink,
        "CREATE SETTINGS PROFILE p SETTINGS readonly = 1, max_executon_time = 60",
    )
    names = profile_settings(statement)
    assert names == ["readonly", "max_executon_time"]
    assert unknown_settings(clickhouse_sink, names) == {"max_executon_time"}
