"""The reliability suite's knobs: how many kill trials, and the seed their moments come from.

Loaded by ``tests/conftest.py`` (``pytest_plugins``) so that its options exist
however pytest is started:

``--reliability-trials=N`` (or ``BOOTSYNC_RELIABILITY_TRIALS=N``)
    kill -9 trials per process kind; without it each kind runs the few its
    ``kill_trials(ci=...)`` marker names, which keeps the normal run short.
``--reliability-seed=S`` (or ``BOOTSYNC_RELIABILITY_SEED=S``)
    the seed of every trial's random moments; without it a fresh one per run.
    It is printed in the header of the run and by every trial, so a failing
    trial is rerun with the same moments by passing it back.
"""

from __future__ import annotations

import os
import random
import secrets

import pytest

TRIALS_ENV = "BOOTSYNC_RELIABILITY_TRIALS"
SEED_ENV = "BOOTSYNC_RELIABILITY_SEED"
_SEED = pytest.StashKey[int]()
_RAN = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--reliability-trials`` and ``--reliability-seed``."""
    group = parser.getgroup("reliability", "the reliability suite (tests/reliability)")
    group.addoption(
        "--reliability-trials",
        type=int,
        default=None,
        metavar="N",
        help=f"kill -9 trials per process kind (env {TRIALS_ENV}; default: a few in CI)",
    )
    group.addoption(
        "--reliability-seed",
        type=int,
        default=None,
        metavar="SEED",
        help=f"seed of the trials' random moments (env {SEED_ENV}; default: a fresh one)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and fix this run's seed."""
    config.addinivalue_line(
        "markers", "kill_trials(ci): kill -9 trials, ``ci`` of them unless asked for more"
    )
    given = config.getoption("--reliability-seed")
    if given is None and os.environ.get(SEED_ENV):
        given = int(os.environ[SEED_ENV])
    config.stash[_SEED] = given if given is not None else secrets.randbelow(10**9)


def pytest_report_header(config: pytest.Config) -> str:
    """The seed, first thing in the output."""
    return _seed_line(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Remember whether this run holds reliability tests (the summary then names the seed)."""
    config.stash[_RAN] = any("reliability" in item.nodeid.split("/") for item in items)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """The seed again at the end, where ``pytest -q`` (which has no header) shows it too."""
    if config.stash.get(_RAN, False):
        terminalreporter.write_line(_seed_line(config))


def _seed_line(config: pytest.Config) -> str:
    return f"reliability seed: {config.stash[_SEED]} (rerun with --reliability-seed=SEED)"


def trial_count(config: pytest.Config, ci: int) -> int:
    """Trials to run: the option, else the environment, else ``ci``."""
    given = config.getoption("--reliability-trials")
    if given is None and os.environ.get(TRIALS_ENV):
        given = int(os.environ[TRIALS_ENV])
    return max(1, given) if given is not None else ci


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``trial`` under ``kill_trials(ci)`` runs once per trial, ids trial0..."""
    marker = metafunc.definition.get_closest_marker("kill_trials")
    if marker is None or "trial" not in metafunc.fixturenames:
        return
    count = trial_count(metafunc.config, int(marker.kwargs.get("ci", 3)))
    metafunc.parametrize("trial", range(count), ids=[f"trial{i}" for i in range(count)])


def seed_of(config: pytest.Config) -> int:
    """This run's seed."""
    return config.stash[_SEED]


@pytest.fixture
def trial_rng(request: pytest.FixtureRequest, trial: int) -> random.Random:
    """Trial ``trial``'s own RNG: seeded from the run's seed and the test id (printed)."""
    seed = seed_of(request.config)
    name = request.node.nodeid
    print(f"reliability seed {seed}, trial {trial} of {name}")
    return random.Random(f"{seed}:{name}")
