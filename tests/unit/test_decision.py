"""The request policy, called directly: facts in, outcome out (no mod_python, no fake).

Each table is one question of the policy: who is asking (anonymous or logged in), share
links, levels and variants, the deny status, the placeholder, and every refusal. The
runtime is real (a real root, ACL store and rendition cache in a temporary folder);
only the login source is a stand-in, as any :class:`LoginSource` may be.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from imageguard.apache.runtime import Runtime
from imageguard.apache.settings import Settings
from imageguard.errors import (
    ConfigError,
    ContentError,
    RenditionError,
    StoreError,
    StoreUnavailable,
    VariantError,
)
from imageguard.files.fileversion import FileVersion
from imageguard.identity import sharelinks
from imageguard.policy.decision import (
    GUEST,
    LOG_ERR,
    LOG_INFO,
    NO_STORE,
    Action,
    Facts,
    FileFacts,
    Login,
    Outcome,
    Phase,
    Progress,
    Unreadable,
    anonymous,
    decide,
    refusal_for,
)
from imageguard.policy.principals import Identity
from imageguard.store import AclStore

ROOT_DIR = Path(__file__).resolve().parents[2]
SECRET = "decision-secret-0123456789"
BOB = Login(Identity("bob", frozenset({"staff"})), "session")
NOBODY = anonymous("no session cookie")


class As:
    """A login source that always names *login* (the policy asks nothing else)."""

    cookie_name = None

    def __init__(self, login: Login) -> None:
        self._login = login
        self.asked = 0

    def login(self, facts: Facts) -> Login:
        self.asked += 1
        return self._login


class Site:
    """A root with images, an ACL store, a cache and a secret; runtimes made from it."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "images"
        (self.root / "gallery").mkdir(parents=True)
        (self.root / "dir.jpg").mkdir()
        for name, size in (
            ("gallery/open.jpg", (40, 30)),
            ("gallery/members.jpg", (40, 30)),
            ("gallery/big.jpg", (800, 600)),
            ("gallery/staff.jpg", (40, 30)),
            ("gallery/secret.jpg", (40, 30)),
        ):
            Image.new("RGB", size, "red").save(self.root / name)
        (self.root / "gallery/page.jpg").write_text("<html>not a picture</html>")
        (self.root / "gallery/notes.txt").write_text("text")
        (self.root / ".hidden.jpg").write_bytes((self.root / "gallery/open.jpg").read_bytes())
        self.cache = tmp / "cache"
        self.cache.mkdir()
        self.secrets = tmp / "secrets"
        self.secrets.write_text(SECRET + "\n")
        self.secrets.chmod(0o600)
        self.db = tmp / "acl.db"
        with AclStore.create(self.db) as store:
            store.grant("gallery/open.jpg", "anyone", "full")
            store.grant("gallery/page.jpg", "anyone", "full")
            store.grant("gallery/members.jpg", "authenticated", "full")
            store.grant("gallery/big.jpg", "anyone", "thumb")
            store.grant("gallery/big.jpg", "authenticated", "preview")
            store.grant("gallery/big.jpg", "user:bob", "full")
            store.grant("gallery/staff.jpg", "group:staff", "thumb")
            store.grant("gallery/secret.jpg", "authenticated", "deny")
        self.opened: list[int] = []

    def runtime(self, login: Login = NOBODY, **options: str) -> Runtime:
        given = {
            "imageguard.root": str(self.root),
            "imageguard.acl_db": str(self.db),
            "imageguard.cache_dir": str(self.cache),
            "imageguard.tkt_secret_file": str(self.secrets),
            "mod_python.session.session_type": "FileSession",
            **{f"imageguard.{k}": v for k, v in options.items()},
        }
        runtime = Runtime(Settings.from_options(given))
        runtime.logins = As(login)
        return runtime

    def facts(self, rel: str, **given: object) -> Facts:
        fields: dict[str, object] = {
            "method": "GET",
            "filename": str(self.root / rel),
            "uri": f"/images/{rel}",
            "host": "images.example.org",
            "now": time.time(),
        }
        fields.update(given)
        return Facts(**fields)  # type: ignore[arg-type]

    def decide(
        self, runtime: Runtime, facts: Facts, phase: Phase = Phase.ALL
    ) -> tuple[Outcome, Progress]:
        progress = Progress()
        try:
            return decide(facts, runtime, progress, phase), progress
        finally:
            self.opened += progress.opened

    def share(self, rel: str, level: str, user: str = "", expires: int | None = None) -> str:
        params = sharelinks.sign(
            rel,
            level,
            int(time.time()) + 600 if expires is None else expires,
            SECRET.encode(),
            user,
            realm=os.path.realpath(self.root),
        )
        return "&".join(f"{k}={v}" for k, v in params.items())


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path)
    yield made
    for fd in made.opened:
        os.close(fd)


def sent(outcome: Outcome) -> str:
    assert outcome.send is not None
    return os.readlink(f"/proc/self/fd/{outcome.send.fd}")


# --------------------------------------------------------------------------- who asks

WHO = [
    # image, login, status, action, user
    ("gallery/open.jpg", NOBODY, 200, Action.ADMIT, ""),
    ("gallery/open.jpg", BOB, 200, Action.ADMIT, "bob"),
    ("gallery/members.jpg", NOBODY, 401, Action.REFUSE, None),
    ("gallery/members.jpg", BOB, 200, Action.ADMIT, "bob"),
    ("gallery/secret.jpg", NOBODY, 401, Action.REFUSE, None),
    ("gallery/secret.jpg", BOB, 403, Action.REFUSE, "bob"),
    ("gallery/staff.jpg", Login(Identity("carol"), "session"), 403, Action.REFUSE, "carol"),
    ("gallery/staff.jpg", BOB, 200, Action.ADMIT, "bob"),
]


@pytest.mark.parametrize(("rel", "login", "status", "action", "user"), WHO)
def test_anonymous_or_logged_in(
    site: Site, rel: str, login: Login, status: int, action: Action, user: str | None
) -> None:
    outcome, _ = site.decide(site.runtime(login), site.facts(rel))
    assert (outcome.status, outcome.action, outcome.user) == (status, action, user)
    if action is Action.ADMIT:
        assert outcome.headers == (
            ("Cache-Control", "private, max-age=0"),
            ("X-Content-Type-Options", "nosniff"),
        )
        assert outcome.vary == "Cookie" and outcome.reason == ""
    else:
        assert outcome.headers == (("Cache-Control", NO_STORE),) and outcome.send is None
    if status == 401:  # a viewer who only needs to log in: logged at info level
        assert outcome.level == LOG_INFO
        assert outcome.reason == "login required: no session cookie"
    if status == 403:
        assert outcome.level == LOG_ERR and outcome.reason.startswith(f"denied {login.identity}:")


NAVIGATION = "text/html,application/xhtml+xml"
REDIRECTS = [
    # image, deny status, login url, accept, status, log reason
    ("gallery/members.jpg", "403", "/login", NAVIGATION, 302, ""),
    ("gallery/members.jpg", "403", "/login?app=1", NAVIGATION, 302, ""),
    ("gallery/members.jpg", "403", "/login", "image/avif,image/*", 401, "login required"),
    ("gallery/members.jpg", "403", "", NAVIGATION, 401, "login required"),
    ("gallery/members.jpg", "404", "/login", NAVIGATION, 302, "login required"),
    ("gallery/members.jpg", "404", "/login", "image/*", 404, "denied anonymous"),
    ("gallery/missing.jpg", "404", "/login", NAVIGATION, 302, "login required"),
    ("gallery/missing.jpg", "404", "", NAVIGATION, 404, "denied anonymous"),
    ("gallery/missing.jpg", "403", "/login", NAVIGATION, 404, "access refused (404)"),
]


@pytest.mark.parametrize(("rel", "deny", "login_url", "accept", "status", "reason"), REDIRECTS)
def test_login_redirect_or_refusal(
    site: Site, rel: str, deny: str, login_url: str, accept: str, status: int, reason: str
) -> None:
    options = {"deny_status": deny, **({"login_url": login_url} if login_url else {})}
    facts = site.facts(rel, accept=accept, uri=f"/images/{rel}?x=1&y")
    outcome, _ = site.decide(site.runtime(**options), facts)
    assert outcome.status == status
    if reason:
        assert outcome.reason.startswith(reason)
    else:  # the plain login redirect is not logged
        assert outcome.reason == ""
    if status == 302:
        assert outcome.action is Action.REDIRECT
        joiner = "&" if "?" in login_url else "?"
        quoted = f"%2Fimages%2F{rel.replace('/', '%2F')}%3Fx%3D1%26y"
        assert dict(outcome.headers) == {
            "Location": f"{login_url}{joiner}back={quoted}",
            "Cache-Control": NO_STORE,
        }


def test_a_logged_in_viewer_is_never_redirected(site: Site) -> None:
    runtime = site.runtime(BOB, login_url="/login", deny_status="404")
    outcome, _ = site.decide(runtime, site.facts("gallery/missing.jpg", accept=NAVIGATION))
    assert (outcome.status, outcome.action) == (404, Action.REFUSE)
    outcome, _ = site.decide(runtime, site.facts("gallery/secret.jpg", accept=NAVIGATION))
    assert outcome.status == 404
    assert outcome.reason == (
        "denied user bob (groups: staff): rule 'gallery/secret.jpg authenticated deny' denies"
    )


# --------------------------------------------------------------------------- share links


def test_share_links(site: Site) -> None:
    runtime = site.runtime()
    rel = "gallery/members.jpg"
    cases = [
        # query, status, what is logged first (a note)
        (site.share(rel, "full"), 200, None),
        (site.share(rel, "thumb"), 200, None),
        (site.share(rel, "full", user="bob"), 401, None),  # for bob only
        (site.share("gallery/open.jpg", "full"), 401, "share link refused: share link signature"),
        (site.share(rel, "full", expires=int(time.time()) - 10), 401, "share link refused"),
        ("ig_sig=forged&ig_exp=1&ig_lvl=full", 401, "share link refused: share link is missing"),
    ]
    for query, status, note in cases:
        outcome, progress = site.decide(runtime, site.facts(rel, query=query))
        assert outcome.status == status, query
        if note is None:
            assert progress.notes == [], query
        else:
            assert progress.notes[0][1].startswith(note), (query, progress.notes)
    thumb, _ = site.decide(runtime, site.facts(rel, query=site.share(rel, "thumb")))
    assert sent(thumb).startswith(str(site.cache))  # the link's level, not more


def test_a_share_link_for_its_user_and_above_the_acl(site: Site) -> None:
    rel = "gallery/staff.jpg"
    link = site.share(rel, "full", user="carol")
    carol = site.runtime(Login(Identity("carol"), "session"))
    outcome, _ = site.decide(carol, site.facts(rel, query=link))
    assert outcome.action is Action.ADMIT and sent(outcome) == str(site.root / rel)
    outcome, _ = site.decide(site.runtime(BOB), site.facts(rel, query=link))
    assert outcome.action is Action.ADMIT and sent(outcome).startswith(str(site.cache))
    no_downgrade = site.runtime(Login(Identity("dave"), "session"), downgrade="off")
    outcome, _ = site.decide(
        no_downgrade, site.facts(rel, query=site.share(rel, "thumb") + "&v=preview")
    )
    assert outcome.status == 403
    assert "a share link grants thumb" in outcome.reason


def test_a_revoked_share_link_grants_nothing(site: Site) -> None:
    rel = "gallery/members.jpg"
    link = site.share(rel, "full")
    with AclStore(site.db) as store:
        store.revoke_link(f"/images/{rel}?{link}")
    outcome, progress = site.decide(site.runtime(), site.facts(rel, query=link))
    assert outcome.status == 401
    assert progress.notes == [(LOG_ERR, "share link refused: share link was revoked")]


# --------------------------------------------------------------------------- levels, variants

VARIANTS = [
    # login, asked (?v=), downgrade, expected: "original", "thumb", "preview" or a status
    (NOBODY, "", "on", "thumb"),
    (NOBODY, "v=thumb", "on", "thumb"),
    (NOBODY, "v=preview", "on", "thumb"),
    (NOBODY, "", "off", 403),
    (NOBODY, "v=thumb", "off", "thumb"),
    (Login(Identity("carol"), "session"), "", "on", "preview"),
    (Login(Identity("carol"), "session"), "v=thumb", "on", "thumb"),
    (Login(Identity("carol"), "session"), "v=preview", "off", "preview"),
    (Login(Identity("carol"), "session"), "", "off", 403),
    (BOB, "", "off", "original"),
    (BOB, "v=preview", "off", "preview"),
    (BOB, "v=thumb", "on", "thumb"),
]


@pytest.mark.parametrize(("login", "query", "downgrade", "expected"), VARIANTS)
def test_each_level_and_variant(
    site: Site, login: Login, query: str, downgrade: str, expected: str | int
) -> None:
    runtime = site.runtime(login, downgrade=downgrade)
    outcome, _ = site.decide(runtime, site.facts("gallery/big.jpg", query=query))
    if isinstance(expected, int):
        assert (outcome.action, outcome.status) == (Action.REFUSE, expected)
        assert "imageguard.downgrade off" in outcome.reason
        return
    assert outcome.action is Action.ADMIT and outcome.send is not None
    assert outcome.send.content_type == "image/jpeg"
    if expected == "original":
        assert sent(outcome) == str(site.root / "gallery/big.jpg")
        return
    assert sent(outcome).startswith(str(site.cache))
    with Image.open(sent(outcome)) as image:  # 800x600: thumb 256, preview not enlarged
        assert max(image.size) == {"thumb": 256, "preview": 800}[expected]


@pytest.mark.parametrize("planted", ["link", "folder", "fifo"])
def test_something_planted_where_a_rendition_belongs_is_a_rendition_error(
    site: Site, planted: str
) -> None:
    """A link, a folder or a FIFO at the rendition's place in the cache is never sent:
    the outcome is a RenditionError (a 500 with its reason), not an internal error."""
    runtime = site.runtime()
    facts = site.facts("gallery/big.jpg", query="v=thumb")
    made, _ = site.decide(runtime, facts)
    path = Path(sent(made))
    path.unlink()
    if planted == "link":
        path.symlink_to(site.root / "gallery/secret.jpg")
    elif planted == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    with pytest.raises(RenditionError, match=str(path)) as raised:
        site.decide(runtime, facts)
    outcome = refusal_for(raised.value, "gatekeeper")
    assert outcome.status == 500 and "internal error" not in outcome.reason


def test_a_preview_is_watermarked_for_its_viewer_and_day(site: Site) -> None:
    runtime = site.runtime(Login(Identity("carol"), "session"), watermark="{user} {host} {date}")
    now = time.mktime((2030, 5, 17, 12, 0, 0, 0, 0, -1))
    outcome, _ = site.decide(runtime, site.facts("gallery/big.jpg", now=now))
    name = sent(outcome)
    anonymous_preview, _ = site.decide(
        site.runtime(watermark="{user}"),
        site.facts("gallery/big.jpg", query=site.share("gallery/big.jpg", "preview")),
    )
    assert sent(anonymous_preview) != name  # another watermark: another rendition
    spec = runtime._preview_spec("carol", "images.example.org", now)
    assert spec.watermark == "carol images.example.org 2030-05-17"
    assert site.runtime()._preview_spec(GUEST, "h", now).watermark.startswith("h")


# --------------------------------------------------------------------------- deny, placeholder


@pytest.mark.parametrize("deny_status", ["403", "404"])
def test_the_deny_status(site: Site, deny_status: str) -> None:
    runtime = site.runtime(BOB, deny_status=deny_status)
    outcome, _ = site.decide(runtime, site.facts("gallery/secret.jpg"))
    assert (outcome.action, outcome.status) == (Action.REFUSE, int(deny_status))
    # Existence hidden: the disk's refusals look like a denial too.
    outcome, _ = site.decide(runtime, site.facts("dir.jpg"))
    assert outcome.status == (404 if deny_status == "404" else 403)


def test_the_placeholder(site: Site) -> None:
    runtime = site.runtime(BOB, placeholder="on")
    outcome, _ = site.decide(runtime, site.facts("gallery/secret.jpg"))
    assert (outcome.action, outcome.status) == (Action.REFUSE, 403)
    assert outcome.send is not None and outcome.send.content_type == "image/png"
    assert sent(outcome).endswith("locked-v1.png")
    assert outcome.headers == (("Cache-Control", NO_STORE),)
    page, _ = site.decide(runtime, site.facts("gallery/secret.jpg", accept=NAVIGATION))
    assert page.status == 403 and page.send is None  # a page gets no picture
    anonymous_viewer, _ = site.decide(
        site.runtime(placeholder="on"), site.facts("gallery/members.jpg")
    )
    assert anonymous_viewer.status == 401 and anonymous_viewer.send is None


# --------------------------------------------------------------------------- refusals

REFUSALS = [
    # facts, status, reason
    ({"method": "POST"}, 405, "access refused (405): method POST not allowed"),
    ({"path_info": "/x.jpg"}, 403, "access refused (403): extra path"),
    ({"filename": "{root}/.hidden.jpg"}, 403, "access refused (403): hidden path segment"),
    ({"filename": "{root}/gallery/notes.txt"}, 403, "access refused (403): extension '.txt'"),
    ({"filename": "{root}/gallery/nothing.jpg"}, 404, "access refused (404): gallery/nothing.jpg"),
    ({"filename": "{root}/dir.jpg"}, 403, "access refused (403): dir.jpg is not a regular file"),
    ({"filename": "/etc/passwd.jpg"}, 403, "access refused (403)"),
]


@pytest.mark.parametrize(("given", "status", "reason"), REFUSALS)
def test_each_refusal_at_the_gate(
    site: Site, given: dict[str, str], status: int, reason: str
) -> None:
    runtime = site.runtime(BOB)
    fields = {k: v.format(root=site.root) for k, v in given.items()}
    outcome, progress = site.decide(runtime, site.facts("gallery/open.jpg", **fields))
    assert (outcome.action, outcome.status) == (Action.REFUSE, status)
    assert outcome.reason.startswith(reason)
    assert outcome.allow == (("GET", "HEAD") if status == 405 else ())
    assert progress.opened == [] and runtime.logins.asked == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("rel", "query", "error"),
    [
        ("gallery/open.jpg", "v=poster", VariantError),
        ("gallery/open.jpg", "v=thumb&v=full", VariantError),
        ("gallery/page.jpg", "", ContentError),
    ],
)
def test_refusals_the_steps_raise(site: Site, rel: str, query: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        site.decide(site.runtime(), site.facts(rel, query=query))


def test_a_bad_variant_is_not_read_for_a_viewer_who_may_see_nothing(site: Site) -> None:
    outcome, _ = site.decide(site.runtime(BOB), site.facts("gallery/secret.jpg", query="v=x"))
    assert outcome.status == 403  # not 400: that would tell the file is there


@pytest.mark.parametrize(
    ("exc", "status", "reason"),
    [
        (Unreadable("filename"), 404, "refused: the requested filename is not UTF-8"),
        (Unreadable("args"), 400, "refused: the query string is not UTF-8"),
        (VariantError("unknown variant"), 400, "refused: unknown variant"),
        (ContentError("file is not a JPEG image"), 415, "refused: file is not a JPEG image"),
        (ConfigError("imageguard.root is not set"), 500, "imageguard.root is not set"),
        (StoreError("ACL store missing"), 500, "ACL store missing"),
        (StoreUnavailable("ACL store pg is unreachable"), 503, "ACL store pg is unreachable"),
        (PermissionError(13, "denied", "/x.jpg"), 403, "refused: Apache's user cannot read"),
        (ZeroDivisionError("bug"), 500, "internal error ZeroDivisionError: bug at ?"),
    ],
)
def test_each_refusal_of_an_error(exc: Exception, status: int, reason: str) -> None:
    outcome = refusal_for(exc, "gatekeeper")
    assert (outcome.action, outcome.status) == (Action.REFUSE, status)
    assert outcome.reason == f"gatekeeper: {reason}" or outcome.reason.startswith(
        f"gatekeeper: {reason}"
    )
    assert outcome.headers == (("Cache-Control", NO_STORE),)


# --------------------------------------------------------------------------- phases


def test_the_three_phases_share_one_progress(site: Site) -> None:
    source = As(BOB)
    runtime = site.runtime()
    runtime.logins = source
    facts, progress = site.facts("gallery/members.jpg"), Progress()
    access = decide(facts, runtime, progress, Phase.ACCESS)
    site.opened += progress.opened
    assert access == Outcome(Action.PASS, 200) and source.asked == 0
    authen = decide(facts, runtime, progress, Phase.AUTHEN)
    assert (authen.action, authen.user) == (Action.PASS, "bob")
    assert progress.env == [("REMOTE_USER_TOKENS", "staff")]
    authz = decide(facts, runtime, progress, Phase.AUTHZ)
    assert authz.action is Action.ADMIT and authz.user is None  # req.user set by authen
    assert source.asked == 1 and progress.opened == [authz.send.fd]  # type: ignore[union-attr]


def test_authorization_alone_refuses_with_the_deny_status(site: Site) -> None:
    outcome, _ = site.decide(site.runtime(), site.facts("gallery/members.jpg"), Phase.AUTHZ)
    assert outcome.status == 403  # no login check in this phase: the ACL's answer


def test_the_gate_alone_admits_without_a_store(site: Site) -> None:
    runtime = Runtime(Settings.from_options({"imageguard.root": str(site.root)}))
    outcome, _ = site.decide(runtime, site.facts("gallery/members.jpg"), Phase.ACCESS)
    assert outcome.action is Action.ADMIT and sent(outcome).endswith("members.jpg")
    with pytest.raises(ContentError):
        site.decide(runtime, site.facts("gallery/page.jpg"), Phase.ACCESS)


def test_a_suspicious_login_is_noted_once(site: Site) -> None:
    runtime = site.runtime(anonymous("malformed session cookie", suspicious=True))
    note = (LOG_INFO, "note from reading the cookies")
    outcome, progress = site.decide(runtime, site.facts("gallery/open.jpg", cookie_note=note))
    assert outcome.action is Action.ADMIT and outcome.user == ""
    assert progress.notes == [note, (LOG_ERR, "ignored login cookie: malformed session cookie")]


def test_apaches_finfo_is_trusted_only_for_the_same_file() -> None:
    version = FileVersion(1, 2, 3, 4_500_000_000, 9)
    assert FileFacts(1, 2, 3, 4).describes(version)
    for other in (
        FileFacts(0, 2, 3, 4),
        FileFacts(1, 0, 3, 4),
        FileFacts(1, 2, 0, 4),
        FileFacts(1, 2, 3, 5),
    ):
        assert not other.describes(version)


# --------------------------------------------------------------------------- login sources


def docs_example() -> types.ModuleType:
    """The login source docs/phases.md shows, run as it is written there."""
    text = (ROOT_DIR / "docs" / "phases.md").read_text()
    section = text.split("## One decision, whichever phases run", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    module = types.ModuleType("signed_header_example")
    exec(compile(code, "docs/phases.md", "exec"), module.__dict__)
    return module


def test_a_third_login_source_needs_no_change_to_the_policy(site: Site) -> None:
    import hashlib
    import hmac

    source = docs_example().SignedHeaderLogin(lambda: (b"proxy-secret",), max_age=60)
    runtime = site.runtime()
    runtime.logins = source
    now = time.time()

    def headers(user: str, stamp: int, secret: bytes = b"proxy-secret") -> dict[str, str]:
        mac = hmac.new(secret, f"{user}|{stamp}".encode(), hashlib.sha256).hexdigest()
        return {"X-Remote-User": user, "X-Remote-Time": str(stamp), "X-Remote-Signature": mac}

    def ask(rel: str, given: dict[str, str]) -> tuple[Outcome, Progress]:
        return site.decide(runtime, site.facts(rel, headers=given, now=now))

    outcome, _ = ask("gallery/members.jpg", headers("bob", int(now)))
    assert (outcome.action, outcome.user) == (Action.ADMIT, "bob")
    outcome, _ = ask("gallery/members.jpg", {})
    assert outcome.status == 401 and outcome.reason == "login required: no X-Remote-User header"
    outcome, progress = ask("gallery/members.jpg", headers("bob", int(now), b"guessed"))
    assert outcome.status == 401
    assert progress.notes == [
        (LOG_ERR, "ignored login cookie: X-Remote-User is not signed by the proxy")
    ]
    outcome, _ = ask("gallery/members.jpg", headers("bob", int(now) - 3600))
    assert outcome.status == 401 and "expired" in outcome.reason
    outcome, _ = ask("gallery/secret.jpg", headers("bob", int(now)))
    assert outcome.status == 403


def test_a_login_source_of_your_own_is_chosen_by_the_option(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs' file on the PythonPath, named by imageguard.session module:callable: the
    runtime calls it with the settings and the secret file's secrets."""
    import hashlib
    import hmac

    text = (ROOT_DIR / "docs" / "phases.md").read_text()
    section = text.split("## One decision, whichever phases run", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    (tmp_path / "signed_header_doc.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    runtime = Runtime(
        Settings.from_options(
            {
                "imageguard.root": str(site.root),
                "imageguard.acl_db": str(site.db),
                "imageguard.tkt_secret_file": str(site.secrets),
                "imageguard.session": "signed_header_doc:from_settings",
            }
        )
    )
    assert type(runtime.logins).__name__ == "SignedHeaderLogin"
    now = int(time.time())
    mac = hmac.new(SECRET.encode(), f"bob|{now}".encode(), hashlib.sha256).hexdigest()
    headers = {"X-Remote-User": "bob", "X-Remote-Time": str(now), "X-Remote-Signature": mac}
    outcome, _ = site.decide(runtime, site.facts("gallery/members.jpg", headers=headers, now=now))
    assert (outcome.action, outcome.user) == (Action.ADMIT, "bob")
    site.secrets.write_text("rotated-secret-0123456789\n" + SECRET + "\n")
    outcome, _ = site.decide(runtime, site.facts("gallery/members.jpg", headers=headers, now=now))
    assert outcome.user == "bob"  # the older secret still verifies after a rotation


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("no_such_module_here:make", "cannot be loaded: ModuleNotFoundError"),
        ("os.path:no_such_function", "cannot be loaded: AttributeError"),
        ("os.path:join", "making the source failed: TypeError"),
        ("operator:is_", "gave bool, which is not a login source"),
        ("not a module", "package.module:callable"),
        ("../evil:x", "package.module:callable"),
    ],
)
def test_a_bad_source_of_your_own_is_a_configuration_error(
    site: Site, value: str, said: str
) -> None:
    options = {"imageguard.root": str(site.root), "imageguard.session": value}
    with pytest.raises(ConfigError, match=r"imageguard\.session") as caught:
        Runtime(Settings.from_options(options))
    assert said in str(caught.value)


def test_the_shipped_sources_through_the_policy(site: Site, tmp_path: Path) -> None:
    """mod_python's FileSession and an auth_tkt ticket, read by the real sources."""
    import pickle

    from imageguard.identity.logins import FileSessionLogin, TicketLogin, login_source
    from imageguard.identity.tickets import issue_ticket

    sessions = tmp_path / "sessions"
    sid = "0123456789abcdef0123456789abcdef"
    folder = sessions / "mp_sess" / sid[:2]
    folder.mkdir(parents=True)
    now = time.time()
    data = {"_data": {"user": "bob"}, "_created": now, "_accessed": now, "_timeout": 60}
    (folder / sid).write_bytes(pickle.dumps(data))
    runtime = Runtime(
        Settings.from_options(
            {
                "imageguard.root": str(site.root),
                "imageguard.acl_db": str(site.db),
                "mod_python.session.session_type": "FileSession",
                "mod_python.file_session.database_directory": str(sessions),
            }
        )
    )
    assert isinstance(runtime.logins, FileSessionLogin)
    facts = site.facts("gallery/members.jpg", cookies=(f"other=1; pysid={sid}",), now=now)
    assert site.decide(runtime, facts)[0].user == "bob"
    late = facts._replace(now=now + 61)  # mod_python's own expiry rule
    assert site.decide(runtime, late)[0].reason == "login required: session expired"

    tickets = Runtime(
        Settings.from_options(
            {
                "imageguard.root": str(site.root),
                "imageguard.acl_db": str(site.db),
                "imageguard.session": "auth_tkt",
                "imageguard.tkt_secret_file": str(site.secrets),
            }
        )
    )
    assert isinstance(tickets.logins, TicketLogin)
    ticket = issue_ticket("bob", ["staff"], SECRET, timestamp=int(now))
    facts = site.facts("gallery/members.jpg", cookies=(f"auth_tkt={ticket}",), now=now)
    outcome, progress = site.decide(tickets, facts)
    assert outcome.user == "bob" and outcome.action is Action.ADMIT
    assert ("REMOTE_USER_TOKENS", "staff") in progress.env
    with AclStore(site.db) as store:
        store.revoke_user("bob")
    outcome, _ = site.decide(tickets, facts)  # seen by the next request
    assert outcome.status == 401
    with pytest.raises(ConfigError):  # a session type no other request can read
        login_source(
            dataclasses.replace(runtime.settings, session_type="MemorySession"),
            tickets.secrets,
            lambda: tickets.acl,
        )
