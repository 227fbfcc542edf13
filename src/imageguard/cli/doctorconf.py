"""What an installed configuration says imageguard should answer, for ``imageguard doctor
--conf FILE``: read from the generated block (or a ``<Directory>`` block an administrator
wrote) or from an ``.htaccess``, and the mistakes that can be seen in it without a
request (a missing handler line, say). :mod:`.doctor` compares the server's answers with
it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..apache.names import ADMITTED_ENV, GATEKEEPER_MODULE, HANDLER_MODULE
from ..apache.options import BY_NAME, cookie_name
from ..errors import ConfigError
from ..identity.sessions import DEFAULT_COOKIE

__all__ = ["ConfFacts", "read_conf", "static_problems"]

_OPEN = re.compile(
    r"<(Directory|DirectoryMatch|Location|LocationMatch|Files|FilesMatch|VirtualHost)"
    r"\b\s*\"?([^\">]*)\"?\s*>",
    re.IGNORECASE,
)
_CLOSE = re.compile(
    r"</(Directory|DirectoryMatch|Location|LocationMatch|Files|FilesMatch|VirtualHost)\s*>",
    re.IGNORECASE,
)
_HANDLER_DIRECTIVES = {
    "pythonaccesshandler": "access",
    "pythonauthenhandler": "authen",
    "pythonauthzhandler": "authz",
    "pythonfixuphandler": "fixup",
}


@dataclass
class _Section:
    """The lines of one ``<Directory>`` (or of an ``.htaccess``) that matter here."""

    directory: str
    handlers: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    auth_type: str = ""
    allow_override: str = ""

    @property
    def ours(self) -> bool:
        return any(
            module.startswith("imageguard")
            for modules in self.handlers.values()
            for module in modules
        ) or any(name.startswith("imageguard.") for name in self.options)


@dataclass(frozen=True)
class ConfFacts:
    """One protected directory as a configuration file sets it up.

    ``kind`` is ``"block"`` (a ``<Directory>`` of the server's configuration) or
    ``"htaccess"``; ``handlers`` maps each phase (access, authen, authz, fixup) to the
    modules named for it; ``alias`` is the URL path an ``Alias`` in the file maps to the
    directory ("" for none); ``blocks`` is how many imageguard blocks the file holds.
    """

    path: str
    kind: str
    directory: str
    handlers: dict[str, tuple[str, ...]]
    options: dict[str, str]
    requires: tuple[str, ...]
    auth_type: str
    allow_override: str
    alias: str
    blocks: int

    def handled(self, phase: str, module: str) -> bool:
        """True when *module* (or one of its functions, ``module::name``) handles *phase*."""
        return any(name.split("::")[0] == module for name in self.handlers.get(phase, ()))

    @property
    def mode(self) -> str:
        """ "one-phase", "three-phase", "gate" (the access handler alone, no ACL store) or
        "none" (no imageguard handler at all)."""
        if self.handled("access", GATEKEEPER_MODULE):
            return "one-phase"
        if self.handled("authen", HANDLER_MODULE) or self.handled("authz", HANDLER_MODULE):
            return "three-phase"
        if self.handled("access", HANDLER_MODULE):
            return "three-phase" if self.option("imageguard.acl_db") else "gate"
        return "none"

    def option(self, name: str) -> str:
        return self.options.get(name, "")

    def setting(self, name: str) -> Any:
        """The option *name* (``imageguard.deny_status``) as imageguard reads the file: its
        parser's value, or its default when unset, or when the value does not parse
        (:func:`static_problems` reports that)."""
        option = BY_NAME[name]
        try:
            return option.value(self.options)
        except ConfigError:
            return option.default

    @property
    def requires_admitted(self) -> bool:
        return any(words.split() == ["env", ADMITTED_ENV] for words in self.requires)

    @property
    def requires_user(self) -> bool:
        return any(words.split()[:1] in (["valid-user"], ["user"]) for words in self.requires)

    @property
    def deny_status(self) -> int:
        return int(self.setting("imageguard.deny_status"))

    @property
    def login_cookie(self) -> str:
        """The cookie holding the login, as the file names it."""
        if self.tickets:
            return str(self.setting("imageguard.tkt_cookie"))
        name = "mod_python.session.cookie_name"
        try:
            return cookie_name(name, DEFAULT_COOKIE, self.options.get(name))
        except ConfigError:
            return DEFAULT_COOKIE

    @property
    def tickets(self) -> bool:
        """True when logins are auth_tkt tickets (else the application's sessions)."""
        return self.setting("imageguard.session") == "auth_tkt"

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extensions the gate lets through (its defaults when the file sets none)."""
        return tuple(sorted(self.setting("imageguard.extensions")))

    def option_errors(self) -> list[str]:
        """What imageguard would refuse in the file's options, one message each."""
        found = []
        for name in sorted(self.options):
            option = BY_NAME.get(name)
            if option is None:
                continue
            try:
                option.value(self.options)
            except ConfigError as exc:
                found.append(str(exc))
        return found


def _unquoted(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _read_line(section: _Section, line: str) -> None:
    words = line.split(None, 1)
    if not words:
        return
    name, rest = words[0].lower(), (words[1] if len(words) > 1 else "").strip()
    if name in _HANDLER_DIRECTIVES:
        modules = rest.split()
        section.handlers.setdefault(_HANDLER_DIRECTIVES[name], []).extend(modules)
    elif name == "pythonoption":
        parts = rest.split(None, 1)
        if parts:
            section.options[parts[0]] = _unquoted(parts[1]) if len(parts) > 1 else ""
    elif name == "require":
        section.requires.append(rest)
    elif name == "authtype":
        section.auth_type = rest
    elif name == "allowoverride":
        section.allow_override = rest


def read_conf(text: str, path: str, url_path: str = "") -> ConfFacts:
    """The protected directory *text* (the file *path*) sets up.

    A file with ``<Directory>`` sections is a server block: the section holding
    imageguard's handlers or options is the one read (the one an ``Alias`` of the file
    maps *url_path* into, when there are several); a file without any is an
    ``.htaccess``. Comments and ``<IfModule>`` lines are skipped, their content read.
    """
    outside = _Section("")
    sections: list[_Section] = []
    aliases: dict[str, str] = {}
    stack: list[_Section | None] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        opened = _OPEN.match(line)
        if opened:
            if opened.group(1).lower() == "directory":
                section = _Section(os.path.normpath(opened.group(2).strip()))
                sections.append(section)
                stack.append(section)
            else:
                stack.append(None)  # read, but not as the directory's own lines
            continue
        if _CLOSE.match(line):
            if stack:
                stack.pop()
            continue
        if line.lower().startswith(("<ifmodule", "</ifmodule")):
            continue
        words = line.split()
        if words[0].lower() == "alias" and len(words) >= 3:
            aliases[os.path.normpath(_unquoted(words[2]))] = _unquoted(words[1]).rstrip("/") or "/"
            continue
        current = next((s for s in reversed(stack) if s is not None), None)
        if stack and current is None:
            continue  # inside a <Location>, <Files>, ...: not this directory's lines
        _read_line(current or outside, line)
    ours = [section for section in sections if section.ours]
    if not sections:
        chosen, kind = outside, "htaccess"
    else:
        kind = "block"
        chosen = ours[0] if ours else sections[0]
        for section in ours:
            alias = aliases.get(section.directory, "")
            if alias and url_path.rstrip("/").startswith(alias.rstrip("/")):
                chosen = section
                break
        merged = {**outside.options, **chosen.options}
        chosen.options = merged
    return ConfFacts(
        path=path,
        kind=kind,
        directory=chosen.directory,
        handlers={phase: tuple(modules) for phase, modules in chosen.handlers.items()},
        options=dict(chosen.options),
        requires=tuple(chosen.requires),
        auth_type=chosen.auth_type,
        allow_override=chosen.allow_override,
        alias=aliases.get(chosen.directory, "") if kind == "block" else "",
        blocks=len(ours),
    )


def static_problems(conf: ConfFacts) -> list[tuple[str, str]]:
    """The mistakes *conf* shows without a request: (verdict, reason) pairs, verdict
    "FAIL" or "WARN"."""
    name = conf.path
    found: list[tuple[str, str]] = []
    mode = conf.mode
    if conf.blocks > 1:
        found.append(
            (
                "WARN",
                f"{name} holds {conf.blocks} imageguard blocks; compared with the one for "
                f"{conf.directory}",
            )
        )
    if mode == "none":
        if conf.requires_admitted:
            found.append(
                (
                    "FAIL",
                    f"{name} has `Require env {ADMITTED_ENV}` without its handler line "
                    f"`PythonAccessHandler {GATEKEEPER_MODULE}`: Apache refuses every request",
                )
            )
        else:
            found.append(
                (
                    "FAIL",
                    f"{name} names no imageguard handler for {conf.directory or 'its directory'}",
                )
            )
        return found
    found += [("FAIL", f"{name}: {message}") for message in conf.option_errors()]
    if mode == "one-phase" and not conf.requires_admitted:
        found.append(
            (
                "WARN",
                f"{name} has no `Require env {ADMITTED_ENV}`: Apache does not refuse by "
                "itself what the gatekeeper did not admit (only imageguard's fixup does)",
            )
        )
    if mode == "three-phase":
        missing = [
            f"Python{phase.capitalize()}Handler"
            for phase in ("access", "authen", "authz")
            if not conf.handled(phase, HANDLER_MODULE)
        ]
        if missing:
            found.append(
                (
                    "FAIL",
                    f"{name} lacks {' and '.join(f'`{m} {HANDLER_MODULE}`' for m in missing)}: "
                    "imageguard's fixup refuses (500) every request its phases did not admit",
                )
            )
        if not (conf.auth_type and conf.requires_user):
            found.append(
                (
                    "FAIL",
                    f"{name} lacks `AuthType` and `Require valid-user`: Apache skips the "
                    "authen and authz phases, and imageguard's fixup refuses every image (500)",
                )
            )
    if conf.kind == "block" and conf.allow_override and conf.allow_override.lower() != "none":
        found.append(
            (
                "WARN",
                f"{name} has `AllowOverride {conf.allow_override}`: an .htaccess below the "
                "root may change what imageguard's block set up",
            )
        )
    return found
