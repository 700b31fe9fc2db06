"""The plugin is installed through the pytest11 entry point and can be disabled."""

from __future__ import annotations

import pytest


def test_plugin_is_loaded_in_an_inner_session(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.perf(*): a performance benchmark*"])
    assert result.ret == pytest.ExitCode.OK


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:keisei_perf", "--markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["@pytest.mark.skip(reason=None):*"])  # the listing did print
    assert "@pytest.mark.perf" not in result.stdout.str()
    unknown = pytester.runpytest("-p", "no:keisei_perf", "--perf-threshold=0.1")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR  # the plugin's options went with it
