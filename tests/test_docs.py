"""The README stays true: its configuration reference is the one the code generates."""
from pathlib import Path

from livewatch.plugin_docs import END, START, config_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_config_reference_is_up_to_date():
    text = README.read_text()
    current = START + text.split(START, 1)[1].split(END, 1)[0] + END
    assert current == config_reference(), (
        "README's configuration reference is stale: run `.venv/bin/python -m livewatch.plugin_docs`"
    )


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    assert "make run" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
