"""Config loading, overrides, validation messages (file, line, key path, suggestion) and resolution."""

import pytest
from helpers import mlp_config, write_config

from nncli.config import apply_overrides, document_from_text, dump_yaml, load_document
from nncli.errors import ConfigError
from nncli.experiment import TOP_LEVEL_KEYS, from_document, load_experiment

GOOD = """\
name: demo
seed: 3
data:
  source: csv
  path: table.csv
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dense, units: 2}
loss: cross_entropy
optimizer: {type: adam, learning_rate: 1e-3}
training: {epochs: 3e0, batch_size: 8}
"""


def located(text: str, overrides=()) -> str:
    """The one-line message a broken config produces."""
    doc = document_from_text(text, "cfg.yaml")
    with pytest.raises(ConfigError) as err:
        apply_overrides(doc, overrides, TOP_LEVEL_KEYS)
        from_document(doc)
    return str(err.value)


def test_scientific_notation_is_a_float_and_ints_stay_ints():
    doc = document_from_text("a: 1e-3\nb: 3e4\nc: 10\nd: -2.5E+2\ne: .5\n")
    assert doc.data == {"a": 0.001, "b": 30000.0, "c": 10, "d": -250.0, "e": 0.5}
    assert isinstance(doc.data["c"], int)


def test_only_true_and_false_are_booleans():
    doc = document_from_text("a: yes\nb: on\nc: true\nd: False\n")
    assert doc.data == {"a": "yes", "b": "on", "c": True, "d": False}


@pytest.mark.parametrize(
    "text,message",
    [
        ("a: 1\nb: 2\na: 3\n", "cfg.yaml:3: a: duplicate key 'a'"),
        ("a: &x 1\nb: *x\n", "cfg.yaml:1: anchors (&name) are not allowed"),
        ("a: 010\n", "cfg.yaml:1: a: integer 010 has a leading zero"),
        ("a: !!python/object:os.system x\n", "is not allowed"),
        ("a: [1, 2\n", "cfg.yaml:2:"),
        ("- 1\n- 2\n", "the top level must be a mapping"),
        ("", "empty config"),
        ("a: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
        ("a: " + "x" * (1 << 20) + "\n", "larger than 1024 KiB"),
    ],
)
def test_unsafe_or_malformed_yaml_is_refused_with_a_line(text, message):
    with pytest.raises(ConfigError) as err:
        document_from_text(text, "cfg.yaml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_binary_and_missing_files(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ConfigError, match="binary file"):
        load_document(tmp_path / "bin.yaml")
    with pytest.raises(ConfigError, match="file not found"):
        load_document(tmp_path / "nope.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"a: \xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_document(tmp_path / "latin.yaml")


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("learning_rate: 1e-3", "learning_rte: 1e-3", "cfg.yaml:11: optimizer.learning_rte: adam: unknown option 'learning_rte'. Did you mean 'learning_rate'?"),
        ("units: 4,", "units: -3,", "cfg.yaml:8: model.layers.0.units: must be >= 1, got -3"),
        ("units: 4,", "units: four,", "cfg.yaml:8: model.layers.0.units: expected an integer, got 'four'"),
        ("type: adam", "type: adma", "cfg.yaml:11: optimizer.type: unknown optimizer 'adma'. Did you mean 'adam'?"),
        ("activation: relu", "activation: rellu", "cfg.yaml:8: model.layers.0.activation: unknown activation 'rellu'. Did you mean 'relu'?"),
        ("type: dense, units: 2", "type: dens, units: 2", "cfg.yaml:9: model.layers.1.type: unknown layer 'dens'. Did you mean 'dense'?"),
        ("batch_size: 8", "batch_sise: 8", "cfg.yaml:12: training.batch_sise: unknown option 'batch_sise'. Did you mean 'batch_size'?"),
        ("batch_size: 8", "batch_size: true", "cfg.yaml:12: training.batch_size: expected an integer, got true"),
        ("epochs: 3e0", "epochs: 2.5", "cfg.yaml:12: training.epochs: expected an integer, got 2.5"),
        ("loss: cross_entropy", "loss: crossentropy", "cfg.yaml:10: loss: unknown loss 'crossentropy'. Did you mean 'cross_entropy'?"),
        ("seed: 3", "sed: 3", "cfg.yaml:2: sed: unknown option 'sed'. Did you mean 'seed'?"),
        ("source: csv", "source: cvs", "cfg.yaml:4: data.source: unknown data source 'cvs'. Did you mean 'csv'?"),
        ("name: demo", "name: ../evil", "cfg.yaml:1: name: '../evil' cannot name a run folder"),
        ("learning_rate: 1e-3", "learning_rate: .nan", "cfg.yaml:11: optimizer.learning_rate: expected a finite number, got nan"),
        ("activation: relu}", "activation: relu, kernel_regularizer: {type: l2, l2: -1}}", "cfg.yaml:8: model.layers.0.kernel_regularizer.l2: must be >= 0, got -1"),
        ("activation: relu}", "activation: relu, kernel_regularizer: l_2}", "cfg.yaml:8: model.layers.0.kernel_regularizer: unknown regularizer 'l_2'. Did you mean 'l2'?"),
        ("activation: relu}", "activation: relu, activity_regularizer: {type: l1, lambda: 1}}", "cfg.yaml:8: model.layers.0.activity_regularizer.lambda: l1: unknown option 'lambda'"),
        ("batch_size: 8", "batch_size: 8, weight_decay: -0.1", "cfg.yaml:12: training.weight_decay: must be >= 0, got -0.1"),
        ("batch_size: 8", "batch_size: 8, weight_decay: lots", "cfg.yaml:12: training.weight_decay: expected a number, got 'lots'"),
    ],
)
def test_validation_errors_name_file_line_path_and_suggestion(old, new, message):
    assert old in GOOD
    assert message in located(GOOD.replace(old, new, 1))


def test_missing_required_option_points_at_the_layer():
    text = GOOD.replace("{type: dense, units: 2}", "{type: dense}")
    assert "cfg.yaml:9: model.layers.1: dense: missing required option 'units'" in located(text)


def test_overrides_parse_yaml_values_and_index_lists():
    doc = document_from_text(GOOD, "cfg.yaml")
    apply_overrides(doc, ["training.epochs=7", "optimizer.learning_rate=3e-4", "model.layers.0.units=16", "model.layers.-1.units=5"])
    exp = from_document(doc)
    assert exp.training.epochs == 7
    assert exp.optimizer_spec["learning_rate"] == 3e-4
    assert exp.model.layer_specs[0]["units"] == 16
    assert exp.model.layer_specs[-1]["units"] == 5


@pytest.mark.parametrize(
    "override,message",
    [
        ("training.epoch=1", "--set training.epoch=1: training.epoch: unknown option 'epoch'. Did you mean 'epochs'?"),
        ("model.layers.5.units=3", "--set model.layers.5.units=3: model.layers: index 5 is out of range (the list has 2 items)"),
        ("model.layers.x.units=3", "'x' is not a list index"),
        ("training.epochs", "expected KEY=VALUE"),
        ("trainig.epochs=3", "unknown section 'trainig'. Did you mean 'training'?"),
        ("optimizer.learning_rate=fast", "--set optimizer.learning_rate=fast: optimizer.learning_rate: expected a number, got 'fast'"),
        ("training.epochs=[1", "--set training.epochs=[1: training.epochs: cannot read the value"),
    ],
)
def test_override_errors_name_the_override(override, message):
    assert message in located(GOOD, [override])


def test_resolution_fills_defaults_and_is_idempotent(tmp_path, digits):
    path = write_config(tmp_path / "c.yaml", mlp_config(digits))
    resolved = load_experiment(path).resolved()
    assert resolved["optimizer"] == {"type": "adam", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}
    assert resolved["model"]["layers"][1]["kernel_initializer"] == "he_uniform"
    assert resolved["training"]["shuffle"] is True
    again = load_experiment(resolved).resolved()
    assert again == resolved
    # and the YAML written to the run folder reads back to the same config
    (tmp_path / "r.yaml").write_text(dump_yaml(resolved))
    assert load_experiment(tmp_path / "r.yaml").resolved() == resolved


def test_aliases_resolve_to_canonical_names():
    doc = document_from_text(GOOD.replace("activation: relu", "activation: ReLU").replace("loss: cross_entropy", "loss: categorical_crossentropy"))
    exp = from_document(doc)
    assert exp.model.layer_specs[0]["activation"] == "relu"
    assert exp.loss.spec == {"type": "cross_entropy"}


def test_name_defaults_to_the_file_name(tmp_path):
    path = tmp_path / "my-experiment.yaml"
    path.write_text(GOOD.replace("name: demo\n", ""))
    assert load_experiment(path).name == "my-experiment"
