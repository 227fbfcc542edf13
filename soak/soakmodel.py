"""The soak's referee: a model of the ACL store, and the check of every answer against it.

The writer of :mod:`soak` changes the store while the clients ask for images. It logs
each write with the moment it was started and the moment it returned
(:class:`Write`); the clients log each request with the moment its first byte was
about to be sent and the moment its last byte was received (:class:`Observation`).
All moments come from ``time.monotonic()``, one clock for every process of the machine.

Writes are made one after the other, so they number the store's states: ``S0`` is the
initial store, ``Sk`` the store after the first ``k`` writes. For a request sent at
``sent`` and answered at ``received``:

* every write that returned before ``sent`` is in effect: the oldest state the answer may
  reflect is ``S(k0)``, ``k0`` the number of writes returned before ``sent``;
* a write still running at ``sent`` (not returned yet), or started before ``received``,
  is *in flight*: Apache may or may not have seen it when it decided, so the states it
  leads to, up to ``S(k1)`` (``k1`` the number of writes started before ``received``),
  are allowed too;
* the answer is **right** when some state of ``S(k0) .. S(k1)`` gives it: what it
  delivered (the original, a preview, a thumbnail, or a refusal) is the variant that
  state's decision serves for the variant asked, and a refusal has the status that
  state gives (401 for a viewer it makes anonymous, 403 for a logged-in one);
* it is a **wrong grant** when it delivered more than every one of those states allows
  (a protected image to someone none of them lets see it, the original where they only
  allow a preview or a thumbnail), and a **wrong denial** when less than all of them.

So a revocation (a rule removed, a membership ended, a user's tickets revoked) must be
seen by the first request sent after the write returned: only writes that had not
returned at ``sent`` widen the window. A request is counted as a **revocation check**
when a state in effect during the ``lookback`` before it was sent gave more than every
state of its window: the request is one that would show the old grant if the revocation
had been seen late.

The expected answers come from imageguard's own pure code, fed the model's state:
:func:`imageguard.policy.acl.decide` (with the store's group memberships added to the login's
groups, as :class:`imageguard.store.CachedAcl` does), :func:`imageguard.policy.variants.choose`
with downgrading on (the default), and the ticket revocation rule of
:mod:`imageguard.apache.runtime` (a ticket stamped at or before the user's revocation moment
logs nobody in).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from imageguard.policy.acl import Decision, Rule, decide
from imageguard.policy.levels import Level
from imageguard.policy.patterns import anchors_for
from imageguard.policy.principals import ANONYMOUS, Identity
from imageguard.policy.variants import choose

#: What a response delivered, beyond the levels (0 = refused, 1 thumb, 2 preview, 3 full).
REFUSED = int(Level.DENY)
#: A 200 whose body is neither the original nor a rendition of the expected size.
UNRECOGNISED = -1
#: No usable answer (a failed connection, an unexpected status): not judged here.
NO_ANSWER = -2

OPS = ("grant", "revoke", "add_member", "remove_member", "revoke_user")


@dataclass(frozen=True)
class Write:
    """One change the writer made, and when: ``started`` before the call, ``returned``
    after it (``time.monotonic()``).

    ``args``: grant (pattern, principal, level); revoke (pattern, principal);
    add_member / remove_member (group, user); revoke_user (user, the moment recorded,
    as the store returned it).
    """

    op: str
    args: tuple[str, ...]
    started: float
    returned: float

    def __str__(self) -> str:
        return f"{self.op} {' '.join(self.args)}"


@dataclass(frozen=True)
class Login:
    """Who a request claims to be: a session, a ticket (with its timestamp), or nobody."""

    kind: str  # "session", "ticket" or "anonymous"
    user: str | None = None
    groups: frozenset[str] = frozenset()
    stamp: int = 0  # a ticket's timestamp

    def __str__(self) -> str:
        if self.kind == "anonymous":
            return "anonymous"
        extra = f" stamped {self.stamp}" if self.kind == "ticket" else ""
        groups = f" groups {','.join(sorted(self.groups))}" if self.groups else ""
        return f"{self.kind} of {self.user}{groups}{extra}"


@dataclass(frozen=True)
class Observation:
    """One answered request: who asked for what, when, and what came back."""

    sent: float
    received: float
    login: Login
    relpath: str
    asked: Level  # the variant asked for (FULL when the query names none)
    status: int
    delivered: int  # a Level value, REFUSED, UNRECOGNISED or NO_ANSWER


class AclModel:
    """An in-memory copy of the store's rules, memberships and user revocations."""

    def __init__(
        self,
        rules: Iterable[tuple[str, str, str]] = (),
        members: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._rules: dict[str, dict[tuple[str, str], Rule]] = {}
        self._members: dict[str, set[str]] = {}
        self._revoked: dict[str, int] = {}
        for pattern, principal, level in rules:
            self.grant(pattern, principal, level)
        for group, user in members:
            self._members.setdefault(user, set()).add(group)

    def copy(self, kind: type[AclModel] | None = None) -> AclModel:
        """A copy of this state (as a *kind* of model: the control check's wrong one)."""
        other = (kind or type(self))()
        other._rules = {anchor: dict(rules) for anchor, rules in self._rules.items()}
        other._members = {user: set(groups) for user, groups in self._members.items()}
        other._revoked = dict(self._revoked)
        return other

    # -- changes, as the store makes them ------------------------------------------

    def grant(self, pattern: str, principal: str, level: str) -> Rule:
        rule = Rule.parse(pattern, principal, level)
        key = (rule.pattern.text, str(rule.principal))
        self._rules.setdefault(rule.pattern.anchor, {})[key] = rule
        return rule

    def revoke(self, pattern: str, principal: str) -> None:
        probe = Rule.parse(pattern, principal, "deny")
        del self._rules[probe.pattern.anchor][(probe.pattern.text, str(probe.principal))]

    def apply(self, write: Write) -> None:
        """Make the change *write* made (it must be valid in this state)."""
        op, args = write.op, write.args
        if op == "grant":
            self.grant(*args)
        elif op == "revoke":
            self.revoke(*args)
        elif op == "add_member":
            self._members.setdefault(args[1], set()).add(args[0])
        elif op == "remove_member":
            self._members[args[1]].remove(args[0])
        elif op == "revoke_user":
            user, until = args[0], int(args[1])
            self._revoked[user] = max(self._revoked.get(user, until), until)
        else:
            raise ValueError(f"unknown write {op!r}")

    # -- what the state says ------------------------------------------------------

    def rules(self) -> list[tuple[str, str, str]]:
        """Every rule as (pattern, principal, level), sorted."""
        return sorted(
            (rule.pattern.text, str(rule.principal), rule.level.label)
            for rules in self._rules.values()
            for rule in rules.values()
        )

    def has_rule(self, pattern: str, principal: str) -> bool:
        probe = Rule.parse(pattern, principal, "deny")
        key = (probe.pattern.text, str(probe.principal))
        return key in self._rules.get(probe.pattern.anchor, {})

    def memberships(self) -> list[tuple[str, str]]:
        """Every membership as (group, user), sorted."""
        return sorted((g, u) for u, groups in self._members.items() for g in groups)

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset(self._members.get(user, ()))

    def revoked_until(self, user: str) -> int | None:
        return self._revoked.get(user)

    def revocations(self) -> dict[str, int]:
        return dict(self._revoked)

    def identity(self, login: Login) -> Identity:
        """The identity a login gives in this state (a revoked ticket gives nobody)."""
        if login.kind == "anonymous" or login.user is None:
            return ANONYMOUS
        if login.kind == "ticket":
            until = self._revoked.get(login.user)
            if until is not None and login.stamp <= until:
                return ANONYMOUS
        return Identity(login.user, login.groups)

    def decide(self, relpath: str, identity: Identity) -> Decision:
        """imageguard's decision, the store's memberships added to the login's groups."""
        if identity.user is not None:
            identity = identity.with_groups(self.groups_of(identity.user))
        candidates = [
            rule for anchor in anchors_for(relpath) for rule in self._rules.get(anchor, {}).values()
        ]
        return decide(candidates, relpath, identity)

    def expected(self, login: Login, relpath: str, asked: Level) -> tuple[int, bool]:
        """(what the answer delivers, whether the viewer is anonymous) in this state."""
        identity = self.identity(login)
        level = self.decide(relpath, identity).level
        served = choose(asked, level, downgrade=True).variant
        return (REFUSED if served is None else int(served)), identity.user is None


class BlindToGrants(AclModel):
    """A deliberately wrong model, for the control check: it misses every write that gives
    more (a grant of anything but ``deny``, a membership added). Checked against it, a
    run in which imageguard honoured such writes must show wrong grants; if it does not,
    the run proved nothing."""

    def apply(self, write: Write) -> None:
        if write.op == "add_member" or (write.op == "grant" and write.args[2] != "deny"):
            return
        if write.op == "revoke" and not self.has_rule(*write.args):
            return  # a rule it never saw granted
        if write.op == "remove_member" and write.args[0] not in self.groups_of(write.args[1]):
            return  # a membership it never saw added
        super().apply(write)


@dataclass(frozen=True)
class Finding:
    """A wrong answer, with the states its window allowed."""

    what: str  # "wrong grant", "wrong denial", "wrong refusal status", "unrecognised body"
    observation: Observation
    window: tuple[int, int]  # (k0, k1): the states S(k0) .. S(k1)
    allowed: tuple[int, ...]  # what each state of the window delivers

    def describe(self, writes: Sequence[Write] = ()) -> str:
        obs = self.observation
        names = {3: "full", 2: "preview", 1: "thumb", 0: "refusal", -1: "unrecognised"}
        allowed = ", ".join(names.get(a, str(a)) for a in self.allowed)
        k0, k1 = self.window
        flight = (
            "; in flight: " + "; ".join(str(writes[k]) for k in range(k0, k1))
            if k1 > k0 and writes
            else ""
        )
        if k0 and writes:  # the last write in effect, and how long before the sending
            last = writes[k0 - 1]
            gap = (obs.sent - last.returned) * 1000
            flight += f"; sent {gap:.1f} ms after '{last}' returned"
        return (
            f"{self.what}: {obs.login} asked {obs.relpath} as {obs.asked.label}, got "
            f"{obs.status} {names.get(obs.delivered, obs.delivered)}; states S{k0}..S{k1} "
            f"allow: {allowed}{flight}"
        )


@dataclass
class CheckResult:
    """What :func:`check` found."""

    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    #: Requests with at least one write in flight.
    in_flight: int = 0
    #: ... of which the states of the window disagreed about the answer.
    ambiguous: int = 0
    #: Requests sent after a revocation returned, which the old grant would have changed.
    revocation_checks: int = 0
    #: The revoking writes checked that way, each with its earliest check: the time from
    #: the write's return to the sending of the first such request (seconds).
    first_checks: dict[int, float] = field(default_factory=dict)

    def count(self, what: str) -> int:
        return sum(1 for f in self.findings if f.what == what)

    @property
    def wrong_grants(self) -> int:
        return self.count("wrong grant") + self.count("unrecognised body")

    @property
    def wrong(self) -> int:
        return len(self.findings)


def check(
    initial: AclModel,
    writes: Sequence[Write],
    observations: Sequence[Observation],
    lookback: float = 1.0,
) -> CheckResult:
    """Judge every observation against the states its window allows (module docstring).

    Observations without an answer (``NO_ANSWER``) are skipped: they are counted by
    the driver. *writes* must be in the order they were made.
    """
    returned = [w.returned for w in writes]
    started = [w.started for w in writes]
    if any(b.started < a.returned for a, b in zip(writes, writes[1:])):
        raise ValueError("writes overlap: the states are only numbered for one writer")
    judged = [i for i, obs in enumerate(observations) if obs.delivered != NO_ANSWER]
    first = {}
    window = {}
    for i in judged:
        obs = observations[i]
        k0 = bisect.bisect_left(returned, obs.sent)
        k1 = max(k0, bisect.bisect_left(started, obs.received))
        ka = min(k0, bisect.bisect_left(returned, obs.sent - lookback))
        first[i] = ka
        window[i] = (k0, k1)
    starting: dict[int, list[int]] = {}
    for i in judged:
        starting.setdefault(first[i], []).append(i)
    # Per observation: what each state delivers, (state, delivered, anonymous).
    seen: dict[int, list[tuple[int, int, bool]]] = {i: [] for i in judged}
    active: list[int] = []
    model = initial.copy()
    for k in range(len(writes) + 1):
        if k:
            model.apply(writes[k - 1])
        active = [i for i in active if window[i][1] >= k] + starting.get(k, [])
        memo: dict[tuple[Login, str, Level], tuple[int, bool]] = {}
        for i in active:
            obs = observations[i]
            key = (obs.login, obs.relpath, obs.asked)
            found = memo.get(key)
            if found is None:
                found = memo[key] = model.expected(obs.login, obs.relpath, obs.asked)
            seen[i].append((k, *found))
    result = CheckResult(checked=len(judged))
    for i in judged:
        obs = observations[i]
        k0, k1 = window[i]
        states = seen[i]
        inside = [(d, anon) for k, d, anon in states if k >= k0]
        allowed = tuple(d for d, _ in inside)
        if k1 > k0:
            result.in_flight += 1
            if len(set(allowed)) > 1:
                result.ambiguous += 1
        what = ""
        if obs.delivered == UNRECOGNISED:
            what = "unrecognised body"
        elif obs.delivered > max(allowed):
            what = "wrong grant"
        elif obs.delivered < min(allowed):
            what = "wrong denial"
        elif obs.delivered not in allowed:
            what = "wrong grant"  # between two states' answers, and neither of them
        elif obs.delivered == REFUSED:
            anonymous = obs.status == 401
            if not any(d == REFUSED and anon == anonymous for d, anon in inside):
                what = "wrong refusal status"
        if what:
            result.findings.append(Finding(what, obs, (k0, k1), allowed))
        best = max(allowed)
        earlier = [(k, d) for k, d, _ in states if k < k0 and d > best]
        if earlier:
            result.revocation_checks += 1
            revoking = max(k for k, _ in earlier)  # S(revoking) gave more; the next write took it
            gap = obs.sent - writes[revoking].returned
            known = result.first_checks.get(revoking)
            if known is None or gap < known:
                result.first_checks[revoking] = gap
    return result
