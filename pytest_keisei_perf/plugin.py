"""pytest hooks of pytest-keisei-perf: options, hookspecs, configure/unconfigure, the fixture.

``pytest_configure`` picks this process's role once (:mod:`.roles`) and registers only the
plugin objects that role needs: the shared :class:`~.session.PerfSession`, its reporting, and
the role itself.
"""

from __future__ import annotations

from typing import Final

import pytest

from . import hookspecs
from .fixture import PerfFixture
from .perf_warnings import PerfDriftWarning, PerfHistoryWarning, PerfSpeedupWarning, PerfXdistWarning
from .session import CONFIG_KEY, PerfSession
from .settings import MARKER_KEYWORDS, add_options, resolve_settings

# Everything beyond option parsing is imported where it is first needed, torch, numpy and scipy
# only once a perf test is selected: installing the plugin must cost nothing in sessions that
# run none (measured: benchmarks/plugin_overhead.py).

__all__ = [
    "PERF_MARKER_HELP",
    "PerfDriftWarning",
    "PerfFixture",
    "PerfHistoryWarning",
    "PerfSession",
    "PerfSpeedupWarning",
    "PerfXdistWarning",
    "perf",
    "session_key",
]

PERF_MARKER_HELP: Final = (
    f"perf({', '.join(MARKER_KEYWORDS)}): a performance benchmark timed in eager and torch.compile "
    "modes and gated against its baseline; tests using the perf fixture get it automatically"
)

session_key = pytest.StashKey[PerfSession]()
#: A perf test's resolved marker (kept under this name for conftest files that read it).
_config_key = CONFIG_KEY
_PLUGIN_NAMES: Final = ("keisei_perf_session", "keisei_perf_report", "keisei_perf_role")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    from .reporting import SessionReport
    from .roles import make_role

    config.addinivalue_line("markers", PERF_MARKER_HELP)
    _keep_project_configuration(config)
    _run_named_perf_tests(config)
    settings = resolve_settings(config)
    if settings.plot_dir is not None:
        from .plots import PlotUnavailableError, require_matplotlib

        try:
            require_matplotlib()
        except PlotUnavailableError as exc:
            raise pytest.UsageError(f"keisei-perf: {exc}") from None
    session = PerfSession(config, settings)
    session.role = make_role(session)
    config.stash[session_key] = session
    for name, plugin in zip(_PLUGIN_NAMES, (session, SessionReport(session), session.role), strict=True):
        config.pluginmanager.register(plugin, name)


def _keep_project_configuration(config: pytest.Config) -> None:
    """Stop a perf session that would silently run without the project's ini file (pytest chose
    another rootdir); rootdir or ini given explicitly, and workers, are left alone."""
    from .project_config import lost_configuration

    args = [str(a) for a in config.invocation_params.args]
    explicit = config.option.rootdir or config.option.inifilename or config.getoption("perf_worker")
    if explicit or not any(a.startswith("--perf-") for a in args):
        return
    problem = lost_configuration(config.invocation_params.dir, config.inipath, config.rootpath, args)
    if problem:
        raise pytest.UsageError(f"keisei-perf: {problem}")


def _run_named_perf_tests(config: pytest.Config) -> None:
    """A perf test named by node id runs even when addopts' ``-m "not perf"`` (the usual way to
    keep perf tests out of the unit run) would deselect it: naming it is the stronger wish. A
    ``-m`` given on the command line itself is left alone."""
    args = [str(a) for a in config.invocation_params.args]
    expression = config.option.markexpr or ""
    if "perf" not in expression or any(a == "-m" or a.startswith("-m") for a in args):
        return
    if any("::" in a and not a.startswith("-") for a in args):
        config.option.markexpr = ""


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is None:
        return
    session.close()
    for name in _PLUGIN_NAMES:
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)
    del config.stash[session_key]


@pytest.fixture
def perf(request: pytest.FixtureRequest) -> PerfFixture:
    """Benchmark a model or callable in eager and compiled modes: ``perf.benchmark(model, x)``."""
    return PerfFixture(request.node, request.config.stash[session_key].benchmark)
