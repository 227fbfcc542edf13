"""The soak's referee (soak/soakmodel.py): the window rule, and that it can fail.

Every answer must be what some state of the store allowed between the one in effect when
the request was sent (every write returned by then) and the last one a write in flight
led to; these tests hand the checker answers a correct server gives and answers a
broken one gives, and check it tells them apart. The model itself is compared with the
store it stands for.
"""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "soak"))

from soakclient import Classifier, JpegMaker, Plan, jpeg_size
from soakmodel import (
    NO_ANSWER,
    REFUSED,
    UNRECOGNISED,
    AclModel,
    BlindToGrants,
    Login,
    Observation,
    Write,
    check,
)

from imageguard.policy.levels import Level
from imageguard.policy.principals import Identity
from imageguard.store import AclStore

FULL, PREVIEW, THUMB = int(Level.FULL), int(Level.PREVIEW), int(Level.THUMB)
BOB = Login("session", "bob", frozenset({"friends"}))
RULES = [("gallery/", "authenticated", "full"), ("gallery/thumbs/", "authenticated", "thumb")]
# A revocation of the gallery rule, running from 1.0 to 1.1.
REVOKE = Write("revoke", ("gallery/", "authenticated"), 1.0, 1.1)


def seen(
    sent: float,
    received: float,
    delivered: int,
    status: int = 200,
    login: Login = BOB,
    relpath: str = "gallery/cat.jpg",
    asked: Level = Level.FULL,
) -> Observation:
    return Observation(sent, received, login, relpath, asked, status, delivered)


def findings(writes: list[Write], *observations: Observation, model: AclModel | None = None):
    result = check(model or AclModel(RULES), writes, observations)
    return [f.what for f in result.findings], result


def test_answers_of_the_state_in_effect_pass() -> None:
    what, result = findings(
        [REVOKE],
        seen(0.5, 0.6, FULL),  # before the revocation
        seen(2.0, 2.1, REFUSED, 403),  # after it returned
    )
    assert what == [] and result.checked == 2 and result.in_flight == 0


def test_the_old_grant_after_the_revocation_returned_is_a_wrong_grant() -> None:
    what, result = findings([REVOKE], seen(1.1001, 1.2, FULL))
    assert what == ["wrong grant"]
    assert result.wrong_grants == 1
    told = result.findings[0].describe([REVOKE])
    assert "got 200 full; states S1..S1 allow: refusal" in told
    assert "sent 0.1 ms after 'revoke gallery/ authenticated' returned" in told
    # ... and that request was one that checked the revocation, 0.1 ms after it returned.
    assert result.revocation_checks == 1
    assert result.first_checks == {0: pytest.approx(0.0001)}


def test_writes_in_flight_allow_the_states_before_and_after() -> None:
    what, result = findings(
        [REVOKE],
        seen(1.05, 1.15, FULL),  # sent while the revocation ran: the old grant may show
        seen(1.05, 1.15, REFUSED, 403),  # ... or the new refusal
        seen(0.9, 1.05, REFUSED, 403),  # answered after the write started: it may count
        seen(0.9, 1.05, FULL),
    )
    assert what == [] and result.in_flight == 4 and result.ambiguous == 4
    assert result.revocation_checks == 0  # none was sent after the write returned


def test_a_write_started_after_the_answer_does_not_count() -> None:
    what, _ = findings([REVOKE], seen(0.5, 0.99, REFUSED, 403))
    assert what == ["wrong denial"]


def test_a_grant_seen_late_is_a_wrong_denial_and_seen_early_a_wrong_grant() -> None:
    grant = Write("grant", ("private/", "user:bob", "full"), 1.0, 1.1)
    what, _ = findings(
        [grant],
        seen(1.2, 1.3, REFUSED, 403, relpath="private/a.jpg"),  # late
        seen(0.5, 0.9, FULL, relpath="private/a.jpg"),  # before it was made
    )
    assert what == ["wrong denial", "wrong grant"]


def test_variants_follow_the_level_and_what_was_asked() -> None:
    thumbs = "gallery/thumbs/a.jpg"
    what, _ = findings(
        [],
        seen(0.1, 0.2, THUMB, relpath=thumbs),  # downgraded from the original asked
        seen(0.1, 0.2, THUMB, relpath=thumbs, asked=Level.PREVIEW),
        seen(0.1, 0.2, PREVIEW, asked=Level.PREVIEW),  # full level, preview asked
        seen(0.1, 0.2, FULL, relpath=thumbs),  # the original where only a thumb is allowed
        seen(0.1, 0.2, PREVIEW, relpath=thumbs),  # a preview where only a thumb is allowed
        seen(0.1, 0.2, FULL, asked=Level.THUMB),  # more than asked for
    )
    assert what == ["wrong grant", "wrong grant", "wrong grant"]


def test_the_refusal_status_says_whether_the_viewer_is_logged_in() -> None:
    nobody = Login("anonymous")
    what, _ = findings(
        [],
        seen(0.1, 0.2, REFUSED, 401, login=nobody),
        seen(0.1, 0.2, REFUSED, 403, login=nobody),
        seen(0.1, 0.2, REFUSED, 401, relpath="private/a.jpg"),
        seen(0.1, 0.2, REFUSED, 403, relpath="private/a.jpg"),
    )
    assert what == ["wrong refusal status", "wrong refusal status"]


def test_revoking_a_user_makes_the_tickets_stamped_until_then_anonymous() -> None:
    old = Login("ticket", "bob", frozenset(), stamp=1000)
    new = Login("ticket", "bob", frozenset(), stamp=1001)
    session = Login("session", "bob", frozenset())
    revoke = Write("revoke_user", ("bob", "1000"), 1.0, 1.1)
    what, result = findings(
        [revoke],
        seen(1.2, 1.3, REFUSED, 401, login=old),  # anonymous now: 401
        seen(1.2, 1.3, FULL, login=new),  # a ticket issued after the revocation
        seen(1.2, 1.3, FULL, login=session),  # sessions are not tickets
        seen(1.2, 1.3, FULL, login=old),  # the revoked ticket still working
        seen(1.2, 1.3, REFUSED, 403, login=old),  # refused, but as if still logged in
    )
    assert what == ["wrong grant", "wrong refusal status"]
    assert result.revocation_checks == 3  # the requests with the revoked ticket


def test_a_membership_ended_ends_what_the_group_was_given() -> None:
    model = AclModel([("club/", "group:club", "full")], [("club", "bob")])
    leave = Write("remove_member", ("club", "bob"), 1.0, 1.1)
    what, _ = findings(
        [leave],
        seen(0.5, 0.6, FULL, relpath="club/a.jpg"),
        seen(1.2, 1.3, FULL, relpath="club/a.jpg"),
        model=model,
    )
    assert what == ["wrong grant"]


def test_bodies_that_are_no_variant_are_wrong_and_unanswered_requests_are_not_judged() -> None:
    what, result = findings([], seen(0.1, 0.2, UNRECOGNISED), seen(0.1, 0.2, NO_ANSWER, 0))
    assert what == ["unrecognised body"] and result.wrong_grants == 1 and result.checked == 1


def test_a_deliberately_wrong_model_turns_honoured_grants_into_wrong_grants() -> None:
    """The soak's control check: a server that honoured a grant, judged by a model that
    missed it, shows wrong grants."""
    grant = Write("grant", ("private/", "user:bob", "full"), 1.0, 1.1)
    answers = [seen(1.2, 1.3, FULL, relpath="private/a.jpg")]
    right = check(AclModel(RULES), [grant], answers)
    wrong = check(AclModel(RULES).copy(BlindToGrants), [grant], answers)
    assert right.wrong == 0 and wrong.wrong_grants == 1


def test_overlapping_writes_are_refused() -> None:
    with pytest.raises(ValueError):
        check(AclModel(), [REVOKE, Write("revoke", ("a/", "anyone"), 1.05, 1.2)], [])


def test_the_model_decides_as_the_store_does(tmp_path: Path) -> None:
    """Random writes applied to the store and to the model: the same rules, memberships,
    revocations and decisions after each."""
    rng = random.Random(7)
    patterns = ["a/", "a/*.jpg", "a/x.jpg", "a/b/", "**/*.jpg", "users/{user}/**", "a/b/x.jpg"]
    principals = ["anyone", "authenticated", "user:bob", "user:eve", "group:g1", "group:g2"]
    paths = ["a/x.jpg", "a/y.jpg", "a/b/x.jpg", "users/bob/z.jpg", "users/eve/z.jpg"]
    model = AclModel()
    with AclStore.create(tmp_path / "acl.db") as store:
        for step in range(300):
            op = rng.choice(["grant", "grant", "revoke", "add_member", "remove_member", "ru"])
            user, group = rng.choice(["bob", "eve"]), rng.choice(["g1", "g2"])
            if op == "grant":
                args: tuple[str, ...] = (
                    rng.choice(patterns),
                    rng.choice(principals),
                    rng.choice(["full", "preview", "thumb", "deny"]),
                )
                store.grant(*args)
            elif op == "revoke" and model.rules():
                args = rng.choice(model.rules())[:2]
                store.revoke(*args)
            elif op == "remove_member" and group in model.groups_of(user):
                args = (group, user)
                store.remove_member(*args)
            elif op == "ru":
                op, args = "revoke_user", (user, str(store.revoke_user(user, 100 + step % 7)))
            else:
                op, args = "add_member", (group, user)
                store.add_member(*args)
            model.apply(Write(op, args, float(step), step + 0.5))
        assert model.rules() == sorted(
            (r.pattern.text, str(r.principal), r.level.label) for r in store.rules()
        )
        assert model.memberships() == sorted((m.group, m.user) for m in store.memberships())
        for user in ("bob", "eve", "zed"):
            assert model.revoked_until(user) == store.user_revoked_until(user)
            for path in paths:
                for groups in (frozenset(), frozenset({"g2"})):
                    identity = Identity(user, groups)
                    assert model.decide(path, identity) == store.decide(path, identity)
        for path in paths:
            assert model.decide(path, Identity()) == store.decide(path, Identity())


def test_every_image_differs_and_the_three_variants_tell_apart_by_size() -> None:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), "red").save(out, "JPEG")
    maker = JpegMaker(out.getvalue())
    one, two = maker.image("a/1.jpg"), maker.image("a/2.jpg")
    assert one != two
    for data in (one, two):
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and image.size == (320, 240)
        assert jpeg_size(data) == (320, 240)
    plan = Plan(
        port=0,
        users=(),
        login_groups=(),
        sids=(),
        secret="",
        relpaths=(),
        base_jpeg=out.getvalue(),
        sizes={FULL: (320, 240), PREVIEW: (160, 120), THUMB: (48, 36)},
        hot_users=(),
        hot_images=(),
        hot_album_images=(),
        own_images=(),
    )
    classify = Classifier(plan).delivered
    small = io.BytesIO()
    Image.new("RGB", (48, 36), "red").save(small, "JPEG")
    assert classify(200, one, "a/1.jpg") == FULL
    assert classify(200, one, "a/2.jpg") == UNRECOGNISED  # another image's bytes
    assert classify(200, small.getvalue(), "a/1.jpg") == THUMB
    assert classify(200, b"<html>", "a/1.jpg") == UNRECOGNISED
    assert classify(403, b"", "a/1.jpg") == classify(401, b"", "a/1.jpg") == REFUSED
    assert classify(500, b"", "a/1.jpg") == NO_ANSWER
