"""Shared fixtures: settings, the reference speech, one loaded Korean engine per session,
one converged Ansible site per session (tests/converge.py); how pytest-xdist shares the
modules out (``make test`` runs ``-n 2 --dist loadgroup``)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.captioner.engine import Engine
from bots.captioner.vosk_models import ModelRegistry
from plenary.corpus import CorpusMissing, Utterance, load_corpus
from plenary.settings import Settings, load_settings
from tests.converge import Converged, converged, site_port, site_variables

pytest_plugins = ["tests.pg_fixtures"]  # PostgreSQL fixtures (pg_server, database_url)

# Modules that run roles (test_ansible_*) and the system test: one xdist group, so the
# session's converged site is made once (a session fixture is per worker), and apt and the
# plenary-ci user are never used by two playbooks at once. (Playbooks that only render
# templates, as in test_deploy_*, may run beside them.)
ANSIBLE_ALSO = ("test_system_event",)
# The longest groups (measured: a minute or more each on 2 cores), handed out first so that
# no worker is left with one of them at the end while the other has nothing to do.
LONGEST_FIRST = (
    "ansible",
    "test_irc_pace",
    "test_bridge_endpoint",
    "test_bridge_bounds",
    "test_irc_restricted",
    "test_irc_servers",
    "test_accuracy",
)


def _group(item: pytest.Item) -> str:
    module = item.path.stem
    return "ansible" if module.startswith("test_ansible") or module in ANSIBLE_ALSO else module


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each module is an xdist group (its tests run on one worker, in order, its module
    fixtures made once), the Ansible modules one group together; the longest go first.
    Collection order is kept otherwise (xdist: --no-loadscope-reorder)."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    rank = {group: n for n, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def speech_dir(settings: Settings) -> Path:
    return settings.speech_dir


def _corpus(speech_dir: Path, language: str) -> list[Utterance]:
    try:
        return load_corpus(speech_dir, language)
    except CorpusMissing as exc:
        pytest.skip(f"reference speech not available: {exc}")


@pytest.fixture(scope="session")
def ko_corpus(speech_dir: Path) -> list[Utterance]:
    return _corpus(speech_dir, "ko")


@pytest.fixture(scope="session")
def en_corpus(speech_dir: Path) -> list[Utterance]:
    return _corpus(speech_dir, "en")


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """The Korean model loaded once for the whole run, with the default (static,
    memory-mapped) graph: about 3 minutes the first time on a machine, to build it."""
    eng = Engine(settings.captioner, ModelRegistry.for_settings(settings))
    eng.models.get("ko")
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def converged_site() -> Iterator[Converged]:
    """The plenary, irc and monitoring roles converged once for the session, the playbook
    run twice (tests/converge.py), for tests/test_ansible_converge.py and
    tests/test_system_event.py; those modules skip (and so never converge) where root,
    ansible-core or the servers are missing."""
    admin = secrets.token_urlsafe(24)
    with converged(site_variables(admin, site_port())) as site:
        yield site
