"""livewatch.testing as a product: the light doubles drive a real daemon, the server fixtures are
opt-in, and a CI run fails when anything was skipped."""
import asyncio

import pytest

from livewatch.components import Classifier
from livewatch.contract import Detection
from livewatch.daemon import Daemon
from livewatch.errors import TransientError
from livewatch.settings import DaemonSettings
from livewatch.testing import ListSource, RecordingSink, fake_segment


class Upper(Classifier):
    name = "upper"

    async def classify(self, segment):
        return Detection.for_segment(segment, label=segment.open().read().decode().upper(),
                                     probability=1.0)


async def test_the_doubles_drive_a_daemon_write_before_ack():
    events = []
    source, sink = ListSource([b"walk", b"run"], events=events), RecordingSink(events=events)
    sink.fail(1, TransientError("throttled"))
    await asyncio.wait_for(Daemon([source], Upper(), [sink], DaemonSettings(health_listen=""))
                           .run(handle_signals=False), 30)
    assert {u: d.label for u, d in sink.by_uri().items()} == {"mem://0": "WALK", "mem://1": "RUN"}
    assert sorted(source.acked) == ["mem://0", "mem://1"] and source.released == []
    assert sink.attempts == 3 and sink.started and sink.closed
    for uri in source.acked:
        assert events.index(("write", uri)) < events.index(("ack", uri))


def test_fake_segment_reads_bytes_or_a_file(tmp_path):
    assert fake_segment(b"abc", stream="cam1", sequence=7).open().read() == b"abc"
    path = tmp_path / "0001.ts"
    path.write_bytes(b"\x47" * 188)
    segment = fake_segment(path, stream="cam1")
    assert (segment.uri, segment.size, segment.open().read()) == (str(path), 188, b"\x47" * 188)


#: The strict plugin alone (not the livewatch fixtures, whose imports take seconds).
STRICT_ONLY = ("-p", "no:livewatch", "-p", "livewatch.testing.strict", "-p", "no:cacheprovider")

SKIPPING = """
import pytest
def test_ran(): pass
def test_server_missing(): pytest.skip("no java")
"""


@pytest.mark.parametrize("env, code", [({"CI": "true"}, 1), ({"LIVEWATCH_REQUIRE_SERVERS": "1"}, 1),
                                       ({}, 0)])
def test_a_skip_fails_the_run_in_ci_and_under_make_test(pytester, monkeypatch, env, code):
    for name in ("CI", "LIVEWATCH_REQUIRE_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest_subprocess(*STRICT_ONLY)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == code
    if code:
        result.stdout.fnmatch_lines(["livewatch: 1 skipped*", "*skipped: *test_server_missing"])


def test_a_clean_ci_run_says_0_skipped(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile("def test_ran(): pass")
    result = pytester.runpytest_subprocess(*STRICT_ONLY)
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["livewatch: 0 skipped*"])


def test_a_missing_server_is_a_failure_naming_what_to_install_in_ci(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "/nonexistent")  # no node: dynalite cannot run
    pytester.makepyfile("def test_table(dynalite): pass")
    result = pytester.runpytest_subprocess("-p", "livewatch.testing.servers", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*dynalite needs node*install it: Node.js and npm*"])


def test_this_suite_runs_with_no_skip_allowed_and_servers_opted_in(pytestconfig):
    """The suite's own config opts in; `make test` requires the servers."""
    assert pytestconfig.pluginmanager.has_plugin("livewatch.testing.strict")
    assert pytestconfig.pluginmanager.has_plugin("livewatch.testing.aws")
    from pathlib import Path
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert "LIVEWATCH_REQUIRE_SERVERS=1 $(BIN)/pytest\n" in makefile


def test_server_fixtures_are_not_loaded_without_opting_in(pytester):
    pytester.makepyfile("""
        def test_light(pytestconfig, recording_sink, list_source, video_factory):
            assert not pytestconfig.pluginmanager.has_plugin("livewatch.testing.aws")
        def test_heavy(moto_server): pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'moto_server' not found*"])


def test_the_readme_documents_every_public_helper():
    from pathlib import Path

    import livewatch.testing

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in livewatch.testing.__all__:
        assert f"`{name}" in readme or f" {name}(" in readme, name
    assert "-p\nlivewatch.testing.servers" in readme or "-p livewatch.testing.servers" in readme
