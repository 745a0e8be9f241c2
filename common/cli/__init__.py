"""The ``bootsync`` command line: local tools, and the MAAS CLI grammar for profiles.

The first word decides: a local command (``mirror``, ``login``, ``apikey``, ...)
runs here; any other word must be a profile made by ``bootsync login``, and
the rest is ``COMMAND ACTION [ids] [key=value ...] [key@=file ...]`` built from
that profile's API description (see :mod:`common.cli.maascli_commands`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

# Start-up stays cheap (tests/unit/cli/test_startup_imports.py): registering a
# command is argparse only, and what a command runs (aiohttp, gnupg, the event
# loop, logging) is imported when it runs. An API call (``bootsync PROFILE ...``)
# uses http.client: only uploads and import watching import aiohttp.
from common.cli import maascli_profiles, mirror_cmd, sample_stream_cmd
from common.cli.plugins import entry_points
from common.errors import BootsyncError

if TYPE_CHECKING:
    from common.cli.maascli_commands import Invocation
    from common.cli.maascli_profiles import Profile

# Entry points in this group are ``register(subparsers)`` functions that add commands.
COMMAND_GROUP = "bootsync.commands"
_COMMANDS = (sample_stream_cmd, mirror_cmd, maascli_profiles)
_LEVELS = ["debug", "info", "warning", "error"]
_FORMATS = ["auto", "json", "console"]
# 128 + SIGPIPE: the status a shell gives a command that wrote into a closed pipe.
EXIT_BROKEN_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every local subcommand."""
    parser = argparse.ArgumentParser(
        prog="bootsync",
        description="bootsync: boot images for bare-metal provisioning.",
        epilog="API commands: bootsync PROFILE COMMAND ACTION [ARGS] [key=value ...] "
        "(log in first; 'bootsync PROFILE --help' lists the commands).",
    )
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(sub)
    # Commands of the daemons' hosts (the region's apikey, createadmin, ...) live
    # with the code they drive and register themselves as entry points.
    for entry in entry_points(group=COMMAND_GROUP):
        entry.load()(sub)
    sub.choices["login"].set_defaults(reserved=frozenset(sub.choices))
    return parser


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default=None, choices=_LEVELS, help="default: info; warning for API commands"
    )
    parser.add_argument("--log-format", default="auto", choices=_FORMATS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bootsync``; returns the process exit code.

    A reader that goes away early (``bootsync admin boot-resources read | head -1``)
    ends the command quietly with :data:`EXIT_BROKEN_PIPE`, as a shell reports a
    tool that SIGPIPE ended, instead of a BrokenPipeError traceback.
    """
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: output still buffered fails here, not at exit
    except BrokenPipeError:
        # Python's documented recipe: point stdout at /dev/null so the interpreter's
        # own flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first = _first_word(words)
    local = _local_commands(parser)
    if first is not None and first not in local:
        return _run_profile(words, first, local)
    # Positionals may follow options (`mirror URL DIR --keyring K 'arch=amd64'`), which
    # argparse leaves unparsed; a command that takes trailing words collects them.
    args, extra = parser.parse_known_args(words)
    if extra:
        collect = getattr(args, "collect_extra", None)
        if collect is None or any(word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        collect(args, extra, parser)
    from common.ops.logging import configure_logging  # noqa: PLC0415 - start-up stays cheap

    # Applied by the first logger made (common.ops.logging.get_logger): login, list
    # and the other commands that never log do not import structlog.
    configure_logging(level=args.log_level or "info", fmt=args.log_format, lazy=True)
    return _guarded(f"bootsync {args.command}", lambda: int(args.run(args)))


def _first_word(words: list[str]) -> str | None:
    """The first word that is not a global option (or its value); None if there is none."""
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--log-level", "--log-format"):
            skip = True
        elif word in ("-h", "--help"):
            return None  # argparse answers
        elif not word.startswith("-"):
            return word
    return None


def _local_commands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    return []


def _run_profile(words: list[str], name: str, local: list[str]) -> int:
    """``bootsync PROFILE COMMAND ACTION ...``; exit 2 for an unknown profile."""
    globals_parser = argparse.ArgumentParser(prog="bootsync", add_help=False, allow_abbrev=False)
    _add_global_options(globals_parser)
    position = words.index(name)
    options = globals_parser.parse_args(words[:position])
    from common.ops.logging import LogFormat, configure_logging  # noqa: PLC0415

    level: str = options.log_level or "warning"
    fmt: LogFormat = options.log_format
    # Applied by the first logger made: a plain API call never imports structlog.
    configure_logging(level=level, fmt=fmt, lazy=True)
    return _guarded(
        f"bootsync {name}", lambda: _profile_command(name, words[position + 1 :], local)
    )


def _profile_command(name: str, words: list[str], local: list[str]) -> int:
    from common.cli import maascli_commands as grammar  # noqa: PLC0415 - start-up stays cheap
    from common.cli.maascli_profiles import ProfileStore  # noqa: PLC0415

    profile = ProfileStore.default().get(name)
    if profile is None:
        print(
            f"bootsync: error: {name!r} is neither a command nor a profile\n"
            f"commands: {', '.join(local)}\n"
            "profiles: log in with 'bootsync login PROFILE URL KEY' "
            "('bootsync list' shows them)",
            file=sys.stderr,
        )
        return 2
    prog = f"bootsync {name}"
    try:
        commands = grammar.build_commands(
            profile.description, anonymous=profile.credentials is None
        )
        invocation = grammar.parse_invocation(commands, words, prog=prog)
    except grammar.HelpRequested as help_:
        print(help_.text)
        return 0
    except grammar.UsageError as exc:
        print(f"{exc.usage}\n{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{prog}: error: {exc}; run 'bootsync refresh'", file=sys.stderr)
        return 1
    if invocation.is_upload or invocation.watch or invocation.action.local:
        from common.ops.logging import apply_deferred_logging  # noqa: PLC0415
        from common.ops.runtime import run  # noqa: PLC0415

        apply_deferred_logging()
        return run(_send_long(profile, invocation), default_loop="asyncio")
    return _send(profile, invocation)


def _send(profile: Profile, invocation: Invocation) -> int:
    """One request with the standard library: no aiohttp, no event loop, no structlog."""
    from common.cli.maascli_http import ApiClient, print_response  # noqa: PLC0415

    out, err = sys.stdout, sys.stderr
    with ApiClient(
        profile.url,
        profile.credentials,
        insecure=invocation.insecure,
        debug=err if invocation.debug else None,
        api_hash=profile.description.get("hash"),
    ) as client:
        return print_response(client.call(invocation), out=out, err=err)


async def _send_long(profile: Profile, invocation: Invocation) -> int:
    """An upload with progress, or watching an import: on aiohttp and the event loop."""
    from common.cli.maascli_aio import AsyncApiClient  # noqa: PLC0415
    from common.cli.maascli_upload import upload_resource  # noqa: PLC0415
    from common.cli.maascli_watch import watch_import  # noqa: PLC0415

    out, err = sys.stdout, sys.stderr
    async with AsyncApiClient(
        profile.url,
        profile.credentials,
        insecure=invocation.insecure,
        debug=err if invocation.debug else None,
        api_hash=profile.description.get("hash"),
    ) as client:
        if invocation.is_upload:
            return await upload_resource(client, invocation, out=out, err=err)
        return await watch_import(client, invocation, out=out, err=err, start=invocation.watch)


def _guarded(prog: str, body: Callable[[], int]) -> int:
    try:
        return body()
    except _reported_errors() as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _reported_errors() -> tuple[type[Exception], ...]:
    """The errors printed as ``prog: error: ...``; evaluated when one is raised.

    StreamFormatError counts only once simplestreams is loaded (nothing else can
    raise it), so an API call does not import simplestreams to catch it.
    """
    errors = sys.modules.get("simplestreams.errors")
    if errors is None:
        return (BootsyncError,)
    return (BootsyncError, errors.StreamFormatError)
