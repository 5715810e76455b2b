"""The README's config reference is generated from the registries and must be current."""

import re

from conftest import REPO
from typer.testing import CliRunner

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
