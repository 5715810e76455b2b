"""The README's config reference is generated from the registries and must be current."""

import re

import pytest

from conftest import REPO
from typer.testing import CliRunner

from nncli import load_experiment
from nncli.cli import app


def test_readme_reference_matches_the_code():
    generated = CliRunner().invoke(app, ["components", "--markdown"]).stdout.replace("#### ", "### ")
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- reference:start -->\n(.*)<!-- reference:end -->", readme, re.S)
    assert match, "README.md lost its reference markers"
    assert match.group(1) == generated, "README reference is stale: run scripts/update_readme.py"


def test_readme_names_the_setup_commands():
    readme = (REPO / "README.md").read_text()
    assert 'python -m pip install -e ".[dev]"' in readme and "python -m pytest" in readme


CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_every_shipped_config_is_in_the_readme_table():
    readme = (REPO / "README.md").read_text()
    missing = [c.name for c in CONFIGS if f"`configs/{c.name}`" not in readme]
    assert CONFIGS and not missing, f"README's config table lacks {missing}"


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_validates_and_builds(config):
    """`nncli summary` on each config: the whole document validates and the model builds from shapes alone."""
    path = load_experiment(config).data.spec.get("path")  # random_patterns reads no file
    result = CliRunner().invoke(app, ["summary", str(config), *(["--set", f"data.path={REPO / path}"] if path else [])])
    assert result.exit_code == 0, result.output
    assert "total" in result.stdout
