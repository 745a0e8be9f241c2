"""The maas CLI grammar: commands built from a MAAS describe document, and their arguments.

``bootsync PROFILE COMMAND ACTION [ids...] [key=value ...] [key@=file ...]``:
a handler class name becomes the command (``BootSourcesHandler`` →
``boot-sources``), an action name the action (``is_importing`` →
``is-importing``), the handler's URI params are positional, everything else
is ``key=value`` (repeat a key to send a list) or ``key@=path`` (a file).
Pure: no I/O. Bad input raises :class:`UsageError`; ``-h`` raises
:class:`HelpRequested` carrying the text to print.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import BootsyncError

# maascli/utils.py's re_camelcase, verbatim: command and action names must come
# out exactly as the maas CLI derives them from the same describe document.
_CAMELCASE = re.compile(r"([A-Z]*[a-z0-9]+|[A-Z]+)(?:(?=[^a-z0-9])|\Z)")
_PARAM = re.compile(r"^\s*:param\s+(\w+)\s*:\s*(.*)$", re.MULTILINE)
_FILE_ARG = re.compile(r"^([^=@]+)@=(.*)$", re.DOTALL)
_VALUE_ARG = re.compile(r"^([^=]+)=(.*)$", re.DOTALL)

WATCH_ACTION = "watch"
# ``boot-resources create ... content@=FILE`` uploads FILE in chunks (common.cli.maascli_upload).
UPLOAD_FIELD = "content"
WATCH_DOC = (
    "Show per-image progress until the running import ends (a bootsync "
    "addition).\n\nPolls is-importing and the images' sets; exits 1 if an "
    "image is still incomplete when the import ends."
)


class UsageError(BootsyncError):
    """The words do not name a command, an action or its required arguments."""

    def __init__(self, message: str, *, usage: str) -> None:
        self.usage = usage
        super().__init__(message)


class HelpRequested(BootsyncError):
    """``-h``/``--help`` was given; ``text`` is what to print."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__("help requested")


@dataclass(frozen=True)
class Action:
    """One action of a handler, as described by the server."""

    name: str  # the CLI name: ``stop-import``
    api_name: str  # the described name: ``stop_import``
    method: str
    op: str | None
    doc: str
    local: bool = False  # implemented by bootsync itself (``watch``)

    @property
    def summary(self) -> str:
        """The first paragraph of ``doc`` on one line."""
        return split_doc(self.doc)[0]

    def documented_params(self) -> list[tuple[str, str]]:
        """``(name, text)`` of every ``:param name: text`` line of the doc."""
        return [(m.group(1), m.group(2).strip()) for m in _PARAM.finditer(self.doc)]


@dataclass(frozen=True)
class Command:
    """One handler: its URI template and actions."""

    name: str
    handler: str
    doc: str
    params: tuple[str, ...]
    path: str
    uri: str
    actions: Mapping[str, Action]


@dataclass(frozen=True)
class Invocation:
    """A parsed ``COMMAND ACTION ...``: what to send, and the options given."""

    command: Command
    action: Action
    uri_params: Mapping[str, str]
    data: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, Path]] = field(default_factory=list)
    debug: bool = False
    insecure: bool = False
    watch: bool = False

    @property
    def is_upload(self) -> bool:
        """``boot-resources create ... content@=FILE``: a chunked upload with progress."""
        return (
            self.command.name == "boot-resources"
            and self.action.name == "create"
            and any(name == UPLOAD_FIELD for name, _ in self.files)
        )


def handler_command_name(handler: str) -> str:
    """maascli's ``handler_command_name``: CamelCase words, lower-cased, ``handler`` dropped.

    ``BootSourceSelectionsHandler`` → ``boot-source-selections``, ``MaasHandler`` →
    ``maas``; a capital run stays with the word it starts (``IPAddressesHandler`` →
    ``ipaddresses``, ``MAASHandler`` → ``maashandler``).
    """
    words = (w.lower() for w in _CAMELCASE.findall(handler))
    return "-".join(w for w in words if w != "handler")


def action_command_name(name: str) -> str:
    """maascli's ``safe_name`` of an action: ``is_importing`` → ``is-importing``."""
    return "-".join(_CAMELCASE.findall(name))


def split_doc(doc: str | None) -> tuple[str, str]:
    """(first paragraph on one line, the rest) of a describe ``doc``."""
    text = (doc or "").strip()
    first, _, rest = text.partition("\n\n")
    return " ".join(first.split()), rest.strip()


def build_commands(description: Mapping[str, Any], *, anonymous: bool) -> dict[str, Command]:
    """The command tree of a describe document, keyed and sorted by command name.

    With credentials a resource's ``auth`` handler is used (else its ``anon``);
    an anonymous profile sees ``anon`` handlers only. Handlers without actions
    are left out. Raises ValueError when the document has no ``resources`` list.
    """
    resources = description.get("resources")
    if not isinstance(resources, list):
        raise ValueError("the API description has no 'resources' list")
    commands: dict[str, Command] = {}
    for resource in resources:
        handler = (
            resource.get("anon") if anonymous else resource.get("auth") or resource.get("anon")
        )
        if not isinstance(handler, dict) or not handler.get("actions"):
            continue
        command = _command(str(resource.get("name") or handler.get("name")), handler)
        commands[command.name] = command
    return dict(sorted(commands.items()))


def _command(handler_name: str, handler: Mapping[str, Any]) -> Command:
    actions: dict[str, Action] = {}
    for raw in handler["actions"]:
        action = Action(
            name=action_command_name(raw["name"]),
            api_name=raw["name"],
            method=str(raw["method"]).upper(),
            op=raw.get("op"),
            doc=raw.get("doc") or "",
        )
        actions[action.name] = action
    name = handler_command_name(handler_name)
    if name == "boot-resources" and "is-importing" in actions:
        actions[WATCH_ACTION] = Action(
            name=WATCH_ACTION,
            api_name=WATCH_ACTION,
            method="GET",
            op=None,
            doc=WATCH_DOC,
            local=True,
        )
    return Command(
        name=name,
        handler=handler_name,
        doc=handler.get("doc") or "",
        params=tuple(handler.get("params") or ()),
        path=handler.get("path") or "",
        uri=handler.get("uri") or "",
        actions=dict(sorted(actions.items())),
    )


def parse_invocation(
    commands: Mapping[str, Command], words: Sequence[str], *, prog: str
) -> Invocation:
    """Parse ``COMMAND ACTION [ids] [key=value] [key@=file]`` and the options.

    Options anywhere after the action: ``-d/--debug``, ``-k/--insecure``,
    ``--watch`` (``boot-resources import`` only), ``-h/--help``.
    Raises UsageError or HelpRequested.
    """
    usage = f"usage: {prog} COMMAND ACTION [ARGS] [key=value ...] [key@=file ...]"
    if not words or words[0] in ("-h", "--help"):
        listing = profile_help(commands, prog=prog)
        if words:
            raise HelpRequested(listing)
        raise UsageError("a command is required", usage=listing)
    command = commands.get(words[0])
    if command is None:
        raise UsageError(
            f"unknown command {words[0]!r}; commands: {', '.join(commands)}", usage=usage
        )
    rest = list(words[1:])
    if not rest or rest[0] in ("-h", "--help"):
        listing = command_help(command, prog=prog)
        if rest:
            raise HelpRequested(listing)
        raise UsageError(f"{command.name}: an action is required", usage=listing)
    action = command.actions.get(rest[0])
    if action is None:
        raise UsageError(
            f"{command.name}: unknown action {rest[0]!r}; actions: {', '.join(command.actions)}",
            usage=command_help(command, prog=prog),
        )
    return _parse_arguments(command, action, rest[1:], prog=prog)


def _parse_arguments(
    command: Command, action: Action, words: list[str], *, prog: str
) -> Invocation:
    usage = action_usage(command, action, prog=prog)
    flags = {"debug": False, "insecure": False, "watch": False}
    positional: list[str] = []
    data: list[tuple[str, str]] = []
    files: list[tuple[str, Path]] = []
    for word in words:
        if word in ("-h", "--help"):
            raise HelpRequested(action_help(command, action, prog=prog))
        if word in ("-d", "--debug", "-k", "--insecure", "--watch"):
            name = {"-d": "debug", "-k": "insecure"}.get(word, word.lstrip("-"))
            if name == "watch" and not (
                command.name == "boot-resources" and action.name == "import"
            ):
                raise UsageError("--watch is only for 'boot-resources import'", usage=usage)
            flags[name] = True
        elif word.startswith("-") and len(word) > 1:
            raise UsageError(f"unknown option {word!r}", usage=usage)
        elif match := _FILE_ARG.match(word):
            files.append((match.group(1), Path(match.group(2))))
        elif match := _VALUE_ARG.match(word):
            data.append((match.group(1), match.group(2)))
        elif data or files or len(positional) >= len(command.params):
            raise UsageError(
                f"unexpected argument {word!r} (give key=value or key@=file)", usage=usage
            )
        else:
            positional.append(word)
    if len(positional) < len(command.params):
        missing = [p.upper() for p in command.params[len(positional) :]]
        raise UsageError(f"the following arguments are required: {', '.join(missing)}", usage=usage)
    return Invocation(
        command=command,
        action=action,
        uri_params=dict(zip(command.params, positional, strict=True)),
        data=data,
        files=files,
        debug=flags["debug"],
        insecure=flags["insecure"],
        watch=flags["watch"],
    )


def action_usage(command: Command, action: Action, *, prog: str) -> str:
    """``usage: bootsync P boot-source update ID [key=value ...]``."""
    ids = " ".join(p.upper() for p in command.params)
    extra = " [--watch]" if command.name == "boot-resources" and action.name == "import" else ""
    return (
        f"usage: {prog} {command.name} {action.name} {ids + ' ' if ids else ''}"
        f"[-d] [-k]{extra} [key=value ...] [key@=file ...]"
    )


def profile_help(commands: Mapping[str, Command], *, prog: str) -> str:
    """The commands of a profile, one per line with the handler's summary."""
    width = max((len(name) for name in commands), default=0)
    lines = [
        f"usage: {prog} COMMAND ACTION [ARGS] [key=value ...] [key@=file ...]",
        "",
        "commands:",
    ]
    lines += [
        f"  {name.ljust(width)}  {split_doc(cmd.doc)[0]}".rstrip() for name, cmd in commands.items()
    ]
    return "\n".join(lines)


def command_help(command: Command, *, prog: str) -> str:
    """The actions of one command, with their summaries."""
    width = max(len(name) for name in command.actions)
    summary, detail = split_doc(command.doc)
    lines = [f"usage: {prog} {command.name} ACTION [ARGS] [key=value ...]", ""]
    if summary:
        lines += [summary, ""]
    if detail:
        lines += [detail, ""]
    lines.append("actions:")
    lines += [
        f"  {name.ljust(width)}  {action.summary}".rstrip()
        for name, action in command.actions.items()
    ]
    return "\n".join(lines)


def action_help(command: Command, action: Action, *, prog: str) -> str:
    """Usage, doc and documented keywords of one action."""
    summary, detail = split_doc(action.doc)
    lines = [action_usage(command, action, prog=prog), ""]
    if summary:
        lines += [summary, ""]
    if command.params:
        lines.append("positional arguments: " + ", ".join(p.upper() for p in command.params))
    prose = "\n".join(
        line for line in detail.splitlines() if not line.lstrip().startswith((":param", ":type"))
    ).strip()
    if prose:
        lines += [prose, ""]
    params = action.documented_params()
    if params:
        lines.append("keywords:")
        lines += [f"  {name}={'  ' + text if text else ''}".rstrip() for name, text in params]
    lines += [
        "",
        "options: -d/--debug show the HTTP exchange on stderr; "
        "-k/--insecure skip TLS certificate checks",
    ]
    return "\n".join(lines)
