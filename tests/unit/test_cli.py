"""The imageguard command, run in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import imageguard
from imageguard.cli import main
from imageguard.errors import ShareLinkError
from imageguard.identity import sharelinks
from imageguard.identity.secretfile import SecretFile


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "acl.db")
    assert run(capsys, "--db", path, "init")[0] == 0
    return path


def test_init_creates_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sub" / "acl.db"
    code, out, _ = run(capsys, "--db", str(path), "init")
    assert code == 0 and "created ACL store" in out and path.exists()
    code, out, _ = run(capsys, "--db", str(path), "init")
    assert code == 0 and "already there" in out


def test_db_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEGUARD_DB", str(tmp_path / "env.db"))
    assert run(capsys, "init")[0] == 0
    assert (tmp_path / "env.db").exists()


def test_no_db_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGEGUARD_DB", raising=False)
    code, out, err = run(capsys, "rules")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--db PATH or set IMAGEGUARD_DB" in err


def test_grant_rules_revoke(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--db", db, "grant", "gallery/**", "authenticated", "thumb")[0] == 0
    assert run(capsys, "--db", db, "grant", "gallery/a.jpg", "user:bob", "full")[0] == 0
    code, out, _ = run(capsys, "--db", db, "rules")
    assert code == 0
    assert out.splitlines()[1:] == [
        "gallery/**     authenticated  thumb",
        "gallery/a.jpg  user:bob       full",
    ]
    assert run(capsys, "--db", db, "revoke", "gallery/a.jpg", "user:bob")[0] == 0
    code, _, err = run(capsys, "--db", db, "revoke", "gallery/a.jpg", "user:bob")
    assert code == 2 and "no rule for user:bob on gallery/a.jpg" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grant", "a/", "bob", "full"], "unknown principal 'bob'"),
        (["grant", "a/", "user:bob", "everything"], "unknown level 'everything'"),
        (["grant", "/abs", "anyone", "full"], "relative to the root"),
        (["group", "add", "g", "a/b"], "cannot be a path segment"),
        (["explain", "--group", "g", "a.jpg"], "--group needs --user"),
        (["import", "/nonexistent/file"], "cannot read"),
    ],
)
def test_bad_input_changes_nothing(
    db: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = Path(db).read_bytes()
    code, out, err = run(capsys, "--db", db, *args)
    assert code == 2 and out == ""
    assert err.startswith("imageguard: error: ") and message in err and err.count("\n") == 1
    assert run(capsys, "--db", db, "rules")[1].startswith("no rules")
    assert Path(db).read_bytes() == before


def test_missing_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--db", str(tmp_path / "x.db"), "grant", "a/", "anyone", "full")
    assert code == 2 and "run 'imageguard init'" in err
    assert not (tmp_path / "x.db").exists()


def test_explain(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--db", db, "grant", "g/", "authenticated", "thumb")
    run(capsys, "--db", db, "grant", "g/a.jpg", "group:staff", "full")
    run(capsys, "--db", db, "group", "add", "staff", "ann")
    code, out, _ = run(capsys, "--db", db, "explain", "--user", "ann", "g/a.jpg")
    assert code == 0
    assert "full: decided by rule 'g/a.jpg group:staff full'" in out
    assert "g/ authenticated thumb" in out  # listed as outranked
    code, out, _ = run(
        capsys, "--db", db, "explain", "--user", "bob", "--group", "staff", "g/a.jpg"
    )
    assert code == 0 and "full" in out
    code, out, _ = run(capsys, "--db", db, "explain", "--user", "bob", "g/a.jpg")
    assert code == 0 and "thumb: decided by rule 'g/ authenticated thumb'" in out
    code, out, _ = run(capsys, "--db", db, "explain", "g/a.jpg")
    assert code == 1 and "no rule matches" in out
    run(capsys, "--db", db, "grant", "g/a.jpg", "user:bob", "deny")
    code, out, _ = run(capsys, "--db", db, "explain", "--user", "bob", "g/a.jpg")
    assert code == 1 and "deny: decided by rule 'g/a.jpg user:bob deny'" in out


def test_explain_an_absolute_path(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An absolute path is made relative to --root, never quietly read as a relative one
    (/srv/images/g/a.jpg is not srv/images/g/a.jpg); one outside the root is an error."""
    root = tmp_path / "images"
    (root / "g").mkdir(parents=True)
    (tmp_path / "link").symlink_to(root)
    run(capsys, "--db", db, "grant", "g/a.jpg", "anyone", "full")
    for given in (f"{root}/g/a.jpg", f"{root}/g/../g/a.jpg", f"{tmp_path}/link/g/a.jpg"):
        code, out, _ = run(capsys, "--db", db, "explain", "--root", str(root), given)
        assert code == 0 and out.startswith("g/a.jpg for anonymous"), (given, out)
    code, out, _ = run(
        capsys, "--db", db, "explain", "--root", str(tmp_path / "link"), f"{root}/g/a.jpg"
    )
    assert code == 0, out
    code, _, err = run(capsys, "--db", db, "explain", f"{root}/g/a.jpg")
    assert code == 2 and "absolute path: give --root DIR" in err
    for outside in (f"{tmp_path}/g/a.jpg", f"{root}/../g/a.jpg", str(root)):
        code, _, err = run(capsys, "--db", db, "explain", "--root", str(root), outside)
        assert code == 2 and "is not below the root" in err, (outside, err)


def test_groups(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--db", db, "group", "add", "staff", "ann")[0] == 0
    assert run(capsys, "--db", db, "group", "list")[1] == "staff  ann\n"
    assert run(capsys, "--db", db, "group", "remove", "staff", "ann")[0] == 0
    code, _, err = run(capsys, "--db", db, "group", "remove", "staff", "ann")
    assert code == 2 and "not a member" in err
    with pytest.raises(SystemExit):
        main(["--db", db, "group", "add", "staff"])


def test_export_import(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--db", db, "grant", "a b/*.jpg", "anyone", "thumb")
    run(capsys, "--db", db, "group", "add", "g", "u")
    out_file = tmp_path / "rules.txt"
    assert run(capsys, "--db", db, "export", "-o", str(out_file))[0] == 0
    code, text, _ = run(capsys, "--db", db, "export")
    assert code == 0 and text == out_file.read_text()
    other = str(tmp_path / "other.db")
    run(capsys, "--db", other, "init")
    code, out, _ = run(capsys, "--db", other, "import", str(out_file))
    assert code == 0 and "imported 1 rule(s) and 1 membership(s)" in out
    assert run(capsys, "--db", other, "export")[1] == text


def test_apache_conf(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--db",
        db,
        "apache-conf",
        "--root",
        str(tmp_path),
        "--url-path",
        "/pics",
        "--login-url",
        "/login",
        "--deny-status",
        "404",
    )
    assert code == 0
    assert f"Alias /pics {tmp_path}" in out
    assert f"PythonOption imageguard.acl_db {db}" in out
    assert "PythonOption imageguard.deny_status 404" in out
    package_dir = str(Path(imageguard.__file__).resolve().parents[1])
    assert f"PythonPath \"['{package_dir}'" in out
    assert "PythonAccessHandler imageguard.gatekeeper" in out
    assert "Require env IMAGEGUARD_ADMITTED" in out
    code, out, _ = run(capsys, "--db", db, "apache-conf", "--root", str(tmp_path), "--three-phases")
    assert code == 0
    for handler in ("Access", "Authen", "Authz"):
        assert f"Python{handler}Handler imageguard.handlers" in out
    assert "Require valid-user" in out
    code, out, _ = run(capsys, "apache-conf", "--root", str(tmp_path), "--htaccess")
    assert code == 0 and out.startswith("# imageguard access gate")


def test_apache_conf_with_renditions(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "--db",
        db,
        "apache-conf",
        "--root",
        str(tmp_path / "images"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--thumb-size",
        "200",
        "--watermark",
        "{host} {user}",
        "--no-downgrade",
        "--placeholder",
    )
    assert code == 0
    assert f"PythonOption imageguard.cache_dir {tmp_path / 'cache'}" in out
    assert "PythonOption imageguard.thumb_size 200" in out
    assert 'PythonOption imageguard.watermark "{host} {user}"' in out
    assert "PythonOption imageguard.downgrade off" in out
    assert "PythonOption imageguard.placeholder on" in out
    code, _, err = run(capsys, "apache-conf", "--root", str(tmp_path), "--placeholder")
    assert code == 2 and "--placeholder needs --cache-dir" in err
    for bad, message in [
        (["--thumb-size", "5000"], "thumb_size"),
        (["--watermark", "{nope}"], "imageguard.watermark"),
        (["--cache-dir", str(tmp_path / "images" / "cache")], "must not lie inside"),
        (["--watermark", 'say "cheese"'], "cannot be written"),
    ]:
        code, out, err = run(
            capsys,
            "apache-conf",
            "--root",
            str(tmp_path / "images"),
            "--cache-dir",
            str(tmp_path / "cache"),
            *bad,
        )
        assert code == 2 and message in err and out == "", (bad, err)


def test_help_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("init", "grant", "revoke", "rules", "group", "explain", "export", "import"):
        assert command in out
    assert "user:NAME, group:NAME, authenticated, anyone" in out


def test_options_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "options")
    assert code == 0 and "imageguard.acl_db" in out and "imageguard.login_url" in out


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "secrets"
    path.write_text("cli-secret-0123456789abcdef\nolder-secret-0123456789\n")
    path.chmod(0o600)
    return str(path)


def test_ticket_command_is_verifiable(secret_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    from imageguard.identity.tickets import TicketVerifier

    code, out, _ = run(capsys, "ticket", "bob", "--group", "staff", "--secret-file", secret_file)
    assert code == 0
    verified = TicketVerifier(secrets=[b"cli-secret-0123456789abcdef"]).verify(out.strip())
    assert verified.user == "bob" and verified.groups == {"staff"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ticket", "bo!b"], "must not contain '!'"),
        (["ticket", "bob", "--group", "a,b"], "must not contain ','"),
        (["ticket", "bob", "--data", "x\0y"], "NUL"),
    ],
)
def test_ticket_command_refusals(
    secret_file: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, *args, "--secret-file", secret_file)
    assert code == 2 and out == "" and message in err


def test_ticket_needs_a_secret_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMAGEGUARD_SECRET_FILE", raising=False)
    code, _, err = run(capsys, "ticket", "bob")
    assert code == 2 and "--secret-file FILE" in err


def test_share_and_revocation_commands(
    db: str, secret_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, url, _ = run(
        capsys,
        "share",
        "/gallery/cat.jpg",
        "--level",
        "preview",
        "--expires",
        "2h",
        "--user",
        "bob",
        "--secret-file",
        secret_file,
        "--base-url",
        "https://example.org/",
        "--realm",
        "photos",
    )
    assert code == 0
    assert url.startswith("https://example.org/images/gallery/cat.jpg?ig_exp=")
    assert "ig_lvl=preview" in url and "ig_user=bob" in url
    assert url.strip().endswith("&v=preview")  # asks for the variant the link grants
    query = url.split("?", 1)[1].strip()
    secrets = SecretFile(secret_file).secrets()
    grant = sharelinks.verify("gallery/cat.jpg", query, secrets, realm="photos")
    assert grant.user == "bob"
    with pytest.raises(ShareLinkError):  # signed for the realm "photos" only
        sharelinks.verify("gallery/cat.jpg", query, secrets, realm=str(tmp_path))
    code, root_url, _ = run(
        capsys, "share", "a.jpg", "--level", "full", "--expires", "1h",
        "--root", str(tmp_path), "--secret-file", secret_file,
    )  # fmt: skip
    realm = os.path.realpath(tmp_path)  # a site's realm: its root's real path
    sharelinks.verify("a.jpg", root_url.split("?", 1)[1].strip(), secrets, realm=realm)
    code, _, err = run(
        capsys, "share", "a.jpg", "--level", "full", "--expires", "1h",
        "--secret-file", secret_file,
    )  # fmt: skip
    assert code == 2 and "--root DIR or --conf FILE" in err
    code, _, err = run(
        capsys,
        "share",
        "a.jpg",
        "--level",
        "full",
        "--expires",
        "soon",
        "--realm",
        "photos",
        "--secret-file",
        secret_file,
    )
    assert code == 2 and "not a duration" in err
    assert run(capsys, "--db", db, "share-revoke", url.strip())[0] == 0
    assert run(capsys, "--db", db, "revoke-user", "bob")[0] == 0
    code, ticket, _ = run(capsys, "ticket", "carol", "--secret-file", secret_file)
    assert run(capsys, "--db", db, "revoke-ticket", ticket.strip())[0] == 0
    code, out, _ = run(capsys, "--db", db, "revocations")
    kinds = sorted(line.split()[0] for line in out.splitlines())
    assert code == 0 and kinds == ["link", "ticket", "user"]


def test_apache_conf_for_tickets(
    db: str,
    tmp_path: Path,
    secret_file: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _ = run(
        capsys,
        "--db",
        db,
        "apache-conf",
        "--root",
        str(tmp_path),
        "--session",
        "auth_tkt",
        "--secret-file",
        secret_file,
        "--tkt-bind-ip",
        "--tkt-digest",
        "sha512",
    )
    assert code == 0
    assert "PythonOption imageguard.session auth_tkt" in out
    assert f"PythonOption imageguard.tkt_secret_file {secret_file}" in out
    assert "PythonOption imageguard.tkt_bind_ip on" in out
    assert "mod_python.session.session_type" not in out
    monkeypatch.delenv("IMAGEGUARD_SECRET_FILE", raising=False)
    code, _, err = run(capsys, "apache-conf", "--root", str(tmp_path), "--session", "auth_tkt")
    assert code == 2 and "needs --secret-file" in err


def test_doctor_and_install_are_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "doctor" in capsys.readouterr().out
    code, _, err = run(capsys, "apache-conf", "--root", str(tmp_path), "--force")
    assert code == 2 and "--force only goes with --install" in err
    code, _, err = run(capsys, "apache-conf", "--root", str(tmp_path), "--htaccess", "--install")
    assert code == 2 and "an .htaccess is copied by hand" in err
    with pytest.raises(SystemExit) as usage:
        main(["doctor", "http://127.0.0.1/images/"])  # --image is required
    assert usage.value.code == 2


@pytest.mark.parametrize("action", ["warm", "purge"])
def test_renditions_need_a_cache_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    action: str,
) -> None:
    """Without a cache directory, warm and purge say so at once, also for a root that
    holds no image (warm used to report "0 rendition(s) made" and succeed)."""
    monkeypatch.delenv("IMAGEGUARD_CACHE_DIR", raising=False)
    monkeypatch.delenv("IMAGEGUARD_CONF", raising=False)
    status, _, err = run(capsys, "renditions", action, "--root", str(tmp_path))
    assert status == 2
    assert "no rendition cache: give --cache-dir DIR" in err
