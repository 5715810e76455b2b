"""Plugins: your own components from a config's plugins:, --plugin or entry points; checkpoints never import code."""

import textwrap

import pytest
from helpers import cli, mlp_config, one_error_line, write_config

from nncli import plugins
from nncli.layers import LAYERS


PLUGIN = textwrap.dedent(
    '''
    import numpy as np
    from nncli.layers import LAYERS, Layer

    @LAYERS.register("{name}")
    class Square(Layer):
        """Elementwise y = scale·x² (a plugin's layer)."""

        independent_samples = True

        def __init__(self, scale: float = 1.0):
            super().__init__()
            self.scale = scale

        def build(self, input_shape):
            return tuple(input_shape)

        def forward(self, x, training=False):
            self._x = x.copy()
            return self.scale * x * x

        def backward(self, grad_out):
            return grad_out * {factor} * self.scale * self._x
    '''
)


def write_plugin(folder, name="square", factor=2.0, file="my_layers.py"):
    path = folder / file
    path.write_text(PLUGIN.format(name=name, factor=factor))
    return path


@pytest.fixture(autouse=True)
def _forget_plugins():
    """Registries are global: unregister whatever a test's plugins registered."""
    yield
    plugins.unload_all()


def plugin_config(tmp_path, digits, plugins_list=("my_layers.py",)):
    config = mlp_config(digits, epochs=1)
    config["plugins"] = list(plugins_list)
    config["model"]["layers"].insert(2, {"type": "square", "scale": 0.5})
    return write_config(tmp_path / "cfg" / "tiny.yaml", config)


def test_a_plugin_layer_trains_is_listed_and_its_checkpoint_needs_the_plugin(tmp_path, digits):
    (tmp_path / "cfg").mkdir()
    plugin = write_plugin(tmp_path / "cfg")
    config = plugin_config(tmp_path, digits)  # plugins: [my_layers.py], relative to the config's folder
    result = cli("train", config, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    ckpt = tmp_path / "run" / "checkpoints" / "last.npz"
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert str(plugin) in saved and "type: square" in saved  # resolved: the absolute path, the layer by name

    listed = cli("components", "layer")
    assert listed.exit_code == 0 and "square" in listed.stdout and "plugin" in listed.stdout

    plugins.unload_all()  # a fresh process: nothing loaded
    refused = one_error_line(cli("eval", ckpt))
    assert refused == (
        f"error: {ckpt}: model.layers.2: unknown layer 'square' — it comes from plugin {plugin}, "
        f"which is not loaded; pass --plugin {plugin} if you trust it"
    )
    assert "square" not in LAYERS  # refusing imported nothing
    accepted = cli("--plugin", plugin, "eval", ckpt, "--json")
    assert accepted.exit_code == 0, accepted.output
    assert '"accuracy"' in accepted.stdout


def test_bad_plugins_are_one_line_each_and_nothing_is_written(tmp_path, digits):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "cfg" / "syntax.py").write_text("def (:\n")
    write_plugin(tmp_path / "cfg", name="dense", file="clash.py")
    cases = {
        "missing.py": ["missing.py", "no such file"],
        "broken.py": ["broken.py", "RuntimeError", "boom at import"],
        "syntax.py": ["syntax.py", "SyntaxError"],
        "clash.py": ["clash.py", "layer 'dense' is already registered (by nncli itself)"],
        "no_such_module_xyz": ["no_such_module_xyz", "cannot import it"],
    }
    for spec, fragments in cases.items():
        config = plugin_config(tmp_path, digits, [spec])
        line = one_error_line(cli("train", config, "--out", tmp_path / "run"))
        assert "plugins.0" in line and "tiny.yaml:" in line, line
        for fragment in fragments:
            assert fragment in line, line
        assert not (tmp_path / "run").exists()
        line = one_error_line(cli("--plugin", tmp_path / "cfg" / spec if spec.endswith(".py") else spec, "components", "layer"))
        assert line.startswith("error: --plugin: plugin ") and fragments[-1] in line, line
    assert "dense" in LAYERS and LAYERS.origin("dense") is None  # the clash left the built-in alone


def test_a_plugin_is_imported_once_and_a_failed_one_rolls_back(tmp_path):
    path = tmp_path / "two.py"
    path.write_text(PLUGIN.format(name="sq_a", factor=2.0) + "\n" + "raise ValueError('after registering')\n")
    with pytest.raises(Exception, match="after registering"):
        plugins.load(str(path))
    assert "sq_a" not in LAYERS  # rolled back
    good = write_plugin(tmp_path, name="sq_b", file="good.py")
    assert plugins.load(str(good)) == plugins.load(str(good)) == str(good)
    assert LAYERS.origin("sq_b") == str(good)


def test_entry_points_are_loaded_once(monkeypatch, tmp_path):
    calls = []

    class EntryPoint:
        name, value = "demo", "demo_pkg:register"

        def load(self):
            return lambda: calls.append(1) or LAYERS.register("ep_layer")(type("EpLayer", (LAYERS.get("flatten"),), {}))

    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [EntryPoint()] if group == "nncli.plugins" else [])
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    assert cli("components", "layer").exit_code == 0
    assert cli("components", "layer").exit_code == 0
    assert calls == [1] and "ep_layer" in LAYERS
    assert "entry point demo" in LAYERS.origin("ep_layer")
