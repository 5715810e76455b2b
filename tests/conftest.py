import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import make_csv, make_digits, mlp_config, write_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def digits(tmp_path):
    """Folder of a tiny learnable IDX data set (8×8 images, 3 classes)."""
    return make_digits(tmp_path / "digits")


@pytest.fixture
def table(tmp_path):
    """A tiny learnable two-class CSV."""
    return make_csv(tmp_path / "table.csv")


@pytest.fixture
def mlp_yaml(tmp_path, digits):
    """A config file training a small MLP on `digits` for 2 epochs."""
    return write_config(tmp_path / "tiny.yaml", mlp_config(digits))


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """Runs default to runs/<name> under the current directory: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def plots():
    """Request this fixture to draw the real loss.png (other tests get a stub: drawing costs more than the run)."""


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch, request):
    """Drawing a PNG with matplotlib costs more than a tiny training run; only tests that check one draw it."""
    if "plots" not in request.fixturenames:
        monkeypatch.setattr("nncli.plots.plot_history", lambda histories, labels, path: path.write_bytes(b"skipped"))
