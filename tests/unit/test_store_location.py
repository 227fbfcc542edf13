"""The pure parts of the PostgreSQL store: which database a location names, the model's
SQL in psycopg's dialect, the sample paths ``imageguard migrate`` compares, and the
``acl_db`` / ``stale_ok`` options (no PostgreSQL needed)."""

from __future__ import annotations

import pytest

from imageguard.apache.settings import Settings
from imageguard.errors import ConfigError
from imageguard.policy.patterns import compile_pattern
from imageguard.store.location import looks_like_postgresql, parse_location
from imageguard.store.migrate import sample_paths
from imageguard.store.postgres import _dialect


@pytest.mark.parametrize(
    ("given", "kind", "target"),
    [
        ("/var/lib/imageguard/acl.db", "sqlite", "/var/lib/imageguard/acl.db"),
        ("acl.db", "sqlite", "acl.db"),
        ("./x=y.db", "sqlite", "./x=y.db"),
        ("sqlite:/srv/a=b/acl.db", "sqlite", "/srv/a=b/acl.db"),
        ("sqlite:postgresql://not-a-url", "sqlite", "postgresql://not-a-url"),
        ("postgresql://imageguard@db/imageguard", "postgresql", None),
        ("postgres://imageguard@db:5433/ig?passfile=/etc/ig/pgpass", "postgresql", None),
        ("service=imageguard", "postgresql", None),
        ("host=/run/postgresql dbname=imageguard", "postgresql", None),
    ],
)
def test_a_location_names_its_kind_of_store(given: str, kind: str, target: str | None) -> None:
    found = parse_location(given)
    assert found.kind == kind
    assert found.target == (target or given)
    assert looks_like_postgresql(given) == (
        kind == "postgresql" and not given.startswith("sqlite:")
    )


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://imageguard:s3cret@db/imageguard",
        "postgresql://db/imageguard?password=s3cret",
        "host=db dbname=imageguard password=s3cret",
    ],
)
def test_a_password_in_a_location_is_refused_without_showing_it(given: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_location(given)
    assert "password file" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("given", ["", "   ", "sqlite:", "host='unterminated", "postgresql://[x"])
def test_a_malformed_location_is_a_config_error(given: str) -> None:
    with pytest.raises(ConfigError):
        parse_location(given)


def test_the_options_check_the_location_once_and_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^imageguard\.acl_db: .*password file"):
        Settings.from_options(
            {"imageguard.acl_db": "postgresql://u:pw@db/ig"}, default_root="/srv/images"
        )
    settings = Settings.from_options(
        {"imageguard.acl_db": "service=imageguard", "imageguard.stale_ok": "on"},
        default_root="/srv/images",
    )
    assert settings.acl_db == "service=imageguard" and settings.stale_ok is True
    assert Settings.from_options({}, default_root="/srv/images").stale_ok is False


def test_the_models_sql_in_psycopgs_dialect() -> None:
    assert _dialect("SELECT a FROM t WHERE b = ? AND c IN (?, ?)") == (
        "SELECT a FROM t WHERE b = %s AND c IN (%s, %s)"
    )
    assert _dialect("SELECT '100%' WHERE x = ?") == "SELECT '100%%' WHERE x = %s"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("gallery/cat.jpg", ["gallery/cat.jpg"]),
        ("gallery/*.jpg", ["gallery/x.jpg"]),
        ("gallery/", ["gallery/a/photo.jpg", "gallery/photo.jpg"]),
        ("gallery/**/cat.jpg", ["gallery/a/b/cat.jpg", "gallery/cat.jpg"]),
        (
            "users/{user}/**",
            [
                "users/ann/a/photo.jpg",
                "users/ann/photo.jpg",
                "users/bob/a/photo.jpg",
                "users/bob/photo.jpg",
            ],
        ),
        ("**/*.png", ["a/b/x.png", "x.png"]),
    ],
)
def test_sample_paths_are_paths_the_pattern_matches(pattern: str, expected: list[str]) -> None:
    found = sample_paths(pattern, ["ann", "bob"])
    assert found == expected
    compiled = compile_pattern(pattern)
    for path in found:
        user = path.split("/")[1] if "{user}" in pattern else None
        assert compiled.matches(path, user), path


def test_a_copy_that_lost_a_membership_decides_otherwise(tmp_path) -> None:
    """compare_decisions asks the members of a group a candidate rule names, with each
    store's own memberships: a membership lost on the way is a difference."""
    from imageguard.store import AclStore
    from imageguard.store.migrate import compare_decisions, copy_store

    with AclStore.create(tmp_path / "a.db") as source, AclStore.create(tmp_path / "b.db") as target:
        source.import_text(
            "rule 'gallery/*.jpg' group:staff full\nrule 'users/{user}/' authenticated full\n"
            "member staff carol\nmember staff dave\n"
        )
        copy_store(source, target)
        same = compare_decisions(source, target)
        assert same.differences == () and same.decisions > 0
        target.remove_member("staff", "dave")
        found = compare_decisions(source, target)
        assert [d.split(":")[0] for d in found.differences] == ["gallery/x.jpg for user dave"]


def test_a_revocation_missing_from_the_copy_is_named(tmp_path) -> None:
    from imageguard.store import AclStore
    from imageguard.store.migrate import missing_revocations

    with AclStore.create(tmp_path / "a.db") as source, AclStore.create(tmp_path / "b.db") as target:
        source.revoke_user("mallory", 2000)
        source.revoke_link("sig-one")
        assert missing_revocations(source, target) == ["user mallory", "link sig-one"]
        target.revoke_user("mallory", 1000)  # earlier: tickets between still accepted
        target.revoke_link("sig-one")
        assert missing_revocations(source, target) == ["user mallory"]
        target.revoke_user("mallory", 3000)  # later: enforces more
        assert missing_revocations(source, target) == []
