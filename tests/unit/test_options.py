"""The one table of options: it names every Settings and SiteConfig field, its docs
tables are what the docs show, and each option goes from apache-conf's flag through the
written block back to its Settings field."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from imageguard.apache.apacheconf import SITE_ONLY, SiteConfig, read_python_options
from imageguard.apache.options import (
    BY_NAME,
    GROUPS,
    TABLE,
    Option,
    flag_name,
    listing,
    markdown_table,
    marked_tables,
    markers,
    rewrite_tables,
)
from imageguard.apache.settings import OPTIONS, Settings
from imageguard.cli import main
from imageguard.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The Settings fields no single imageguard option fills.
DERIVED = {"session_keys", "session_type", "session_directory", "dbm_filename", "cookie_name"}


def test_names_are_unique_and_grouped() -> None:
    assert len(BY_NAME) == len(TABLE)
    assert list(OPTIONS) == [option.name for option in TABLE]
    for option in TABLE:
        assert option.name.startswith("imageguard."), option.name
        assert option.group in GROUPS, option.name
        assert option.source in ("", "modpython", "auth_tkt"), option.name


def test_the_table_names_every_settings_field_once() -> None:
    named = [option.field for option in TABLE if option.field]
    assert len(named) == len(set(named))
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert set(named) | DERIVED == fields and not set(named) & DERIVED


def test_the_table_names_every_site_config_field_once() -> None:
    named = [option.site for option in TABLE]
    assert len(named) == len(set(named))
    fields = {field.name for field in dataclasses.fields(SiteConfig)}
    assert set(named) | SITE_ONLY == fields and not set(named) & SITE_ONLY


def test_a_switch_is_on_by_default_in_both_or_neither() -> None:
    """An option on by default gets a --no-X flag: SiteConfig must agree it is on."""
    defaults = {field.name: field.default for field in dataclasses.fields(SiteConfig)}
    for option in TABLE:
        if isinstance(option.default, bool):
            assert defaults[option.site] is option.default, option.name
            assert flag_name(option).startswith("--no-") is option.default


def test_the_shown_default_is_the_default() -> None:
    """What the docs call the default parses to the value an unset option gets."""
    for option in TABLE:
        if option.descriptive_default:
            continue
        unset = option.parse(option.name, option.default, None)
        assert option.parse(option.name, option.default, option.shown_default()) == unset


def test_settings_defaults_come_from_the_table() -> None:
    settings = Settings.from_options({}, default_root="/srv/images")
    assert settings.root == "/srv/images"
    for option in TABLE:
        if option.field and option.field != "root":
            expected = option.parse(option.name, option.default, None)
            assert getattr(settings, option.field) == expected, option.name
    assert (settings.session_keys.user_key, settings.session_keys.groups_key) == ("user", "groups")


def test_a_parse_error_names_the_option() -> None:
    refused = 0
    for option in TABLE:
        try:
            option.parse(option.name, option.default, "x\ny;")
        except ConfigError as exc:
            refused += 1
            assert option.name in str(exc), (option.name, exc)
    assert refused >= len(TABLE) // 2


def test_listing_shows_each_option_with_its_default() -> None:
    lines = listing().splitlines()
    assert len(lines) == len(TABLE)
    for line, option in zip(lines, TABLE, strict=True):
        assert line.startswith(option.name + " ")
        assert line.endswith(f"(default: {option.shown_default()})")


def test_markdown_table_lists_a_group() -> None:
    table = markdown_table("tickets")
    rows = table.splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == [o.name for o in TABLE if o.group == "tickets"]
    assert "| `imageguard.tkt_timeout` | `2h` |" in table
    with pytest.raises(ValueError, match="group"):
        markdown_table("nope")


def test_rewrite_tables_replaces_only_the_marked_table() -> None:
    begin, end = markers("renditions")
    text = f"intro\n\n{begin}\n| stale |\n{end}\n\nafter\n"
    rewritten = rewrite_tables(text)
    assert rewritten == f"intro\n\n{begin}\n{markdown_table('renditions')}{end}\n\nafter\n"
    assert marked_tables(rewritten) == [("renditions", markdown_table("renditions"))]


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_the_docs_tables_are_generated(page: Path) -> None:
    for group, table in marked_tables(page.read_text()):
        assert table == markdown_table(group), f"{page.name}: run make options-table"


def test_the_readme_shows_every_group() -> None:
    groups = [group for group, _ in marked_tables((ROOT / "README.md").read_text())]
    assert groups == list(GROUPS)


# ------------------------------------------------ from the flag to the Settings field

#: Two apache-conf runs (one per login source) that set every option to a value that is
#: not its default: (flags, {option: the Settings value it must come back as}).
RUNS: list[tuple[list[str], dict[str, Any]]] = [
    (
        [
            "--session", "auth_tkt",
            "--tkt-digest", "sha512",
            "--tkt-timeout", "10m",
            "--tkt-bind-ip",
            "--cookie-name", "tk",
            "--tkt-allow-no-timeout",
            "--login-url", "https://example.org/login",
            "--deny-status", "404",
            "--max-age", "60",
            "--extensions", ".jpg .png",
            "--thumb-size", "128",
            "--preview-size", "800",
            "--watermark", "{user} {date}",
            "--no-downgrade",
            "--no-verify-content",
            "--share-realm", "gallery-realm",
            "--max-pixels", "1000000",
        ],
        {
            "imageguard.session": "auth_tkt",
            "imageguard.tkt_digest": "sha512",
            "imageguard.tkt_timeout": 600,
            "imageguard.tkt_bind_ip": True,
            "imageguard.tkt_cookie": "tk",
            "imageguard.tkt_allow_no_timeout": True,
            "imageguard.login_url": "https://example.org/login",
            "imageguard.deny_status": 404,
            "imageguard.max_age": 60,
            "imageguard.extensions": frozenset({".jpg", ".png"}),
            "imageguard.thumb_size": 128,
            "imageguard.preview_size": 800,
            "imageguard.watermark": "{user} {date}",
            "imageguard.downgrade": False,
            "imageguard.verify_content": False,
            "imageguard.share_realm": "gallery-realm",
            "imageguard.max_pixels": 1_000_000,
        },
    ),
    (
        ["--placeholder", "--user-key", "uid", "--groups-key", "roles", "--stale-ok"],
        {
            "imageguard.stale_ok": True,
            "imageguard.placeholder": True,
            "imageguard.user_key": "uid",
            "imageguard.groups_key": "roles",
        },
    ),
]  # fmt: skip
#: Set in both runs, with paths made absolute.
PATHS = {
    "imageguard.root": "images",
    "imageguard.acl_db": "acl.db",
    "imageguard.tkt_secret_file": "secrets",
    "imageguard.cache_dir": "cache",
}


def _field_value(settings: Settings, option: Option) -> object:
    if option.field:
        return getattr(settings, option.field)
    return getattr(settings.session_keys, option.short)


def test_the_runs_cover_every_option() -> None:
    covered = set(PATHS).union(*(expected for _, expected in RUNS))
    assert covered == set(BY_NAME)


@pytest.mark.parametrize(("flags", "expected"), RUNS)
def test_each_flag_reaches_its_settings_field(
    flags: list[str],
    expected: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [
        "--db", PATHS["imageguard.acl_db"],
        "apache-conf",
        "--root", PATHS["imageguard.root"],
        "--secret-file", PATHS["imageguard.tkt_secret_file"],
        "--cache-dir", PATHS["imageguard.cache_dir"],
        *flags,
    ]  # fmt: skip
    assert main(argv) == 0
    block = capsys.readouterr().out
    settings = Settings.from_options(read_python_options(block))
    for name, relative in PATHS.items():
        assert _field_value(settings, BY_NAME[name]) == str(tmp_path / relative), name
    for name, value in expected.items():
        assert _field_value(settings, BY_NAME[name]) == value, name
    # The block writes the options in the table's order.
    written = [line.split()[1] for line in block.splitlines() if "PythonOption imageguard." in line]
    assert written == [option.name for option in TABLE if option.name in written]
