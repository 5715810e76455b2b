"""Learning-rate schedules against their formulas."""

import math

import pytest

from nncli.errors import ConfigError
from nncli.schedules import SCHEDULES

BASE, TOTAL = 0.1, 20


def rates(spec, epochs=TOTAL, rows=None):
    schedule = SCHEDULES.create(spec)
    out = []
    for e in range(epochs):
        out.append(schedule(e, BASE, TOTAL))
        if rows is not None:
            schedule.observe({"epoch": e + 1, **rows[e]})
    return out


# name -> (spec, formula of the 0-based epoch). Every registered schedule must appear here.
CASES = {
    "constant": ("constant", lambda e: BASE),
    "step": ({"type": "step", "step_size": 7, "gamma": 0.5}, lambda e: BASE * 0.5 ** (e // 7)),
    "exponential": ({"type": "exponential", "gamma": 0.9}, lambda e: BASE * 0.9**e),
    "cosine": ({"type": "cosine", "min_lr": 0.001}, lambda e: 0.001 + (BASE - 0.001) * (1 + math.cos(math.pi * e / TOTAL)) / 2),
    "warmup": (
        {"type": "warmup", "epochs": 4, "start_factor": 0.25, "then": {"type": "cosine"}},
        lambda e: BASE * (0.25 + 0.75 * e / 4) if e < 4 else BASE * (1 + math.cos(math.pi * (e - 4) / (TOTAL - 4))) / 2,
    ),
}


def test_every_schedule_is_checked():
    assert set(CASES) | {"reduce_on_plateau"} == set(SCHEDULES.names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_schedule_matches_its_formula(name):
    spec, formula = CASES[name]
    assert rates(spec) == pytest.approx([formula(e) for e in range(TOTAL)], rel=1e-12)


def test_cosine_reaches_min_lr_at_the_end_of_its_span():
    schedule = SCHEDULES.create({"type": "cosine", "epochs": 10, "min_lr": 0.01})
    assert schedule(10, BASE, TOTAL) == pytest.approx(0.01)
    assert schedule(15, BASE, TOTAL) == pytest.approx(0.01)


def test_reduce_on_plateau_waits_patience_epochs_then_scales():
    losses = [1.0, 0.9, 0.95, 0.92, 0.91, 0.8, 0.85, 0.86, 0.87]
    got = rates({"type": "reduce_on_plateau", "factor": 0.5, "patience": 3}, epochs=len(losses), rows=[{"val_loss": v} for v in losses])
    # epoch 5 (0-based 4) is the 3rd epoch without beating 0.9: the rate halves from epoch 6 on
    assert got == pytest.approx([BASE] * 5 + [BASE / 2] * 3 + [BASE / 2])
    got = rates(
        {"type": "reduce_on_plateau", "factor": 0.5, "patience": 1, "min_lr": 0.03},
        epochs=5,
        rows=[{"val_loss": 1.0}] * 5,
    )
    assert got == pytest.approx([BASE, BASE, BASE / 2, 0.03, 0.03])  # halves after each flat epoch, floored


def test_plateau_state_round_trip():
    a = SCHEDULES.create({"type": "reduce_on_plateau", "patience": 1})
    for v in (1.0, 2.0):
        a.observe({"epoch": 1, "val_loss": v})
    b = SCHEDULES.create({"type": "reduce_on_plateau", "patience": 1})
    b.load_state_dict(a.state_dict())
    assert b(3, BASE, TOTAL) == a(3, BASE, TOTAL) == pytest.approx(BASE * 0.1)
    for s in (a, b):  # best (1.0) came along: 1.5 is no improvement, and the rate drops again on both
        s.observe({"epoch": 3, "val_loss": 1.5})
    assert b(4, BASE, TOTAL) == a(4, BASE, TOTAL) == pytest.approx(BASE * 0.01)
    # mid-count: the epochs waited so far came along too
    a = SCHEDULES.create({"type": "reduce_on_plateau", "patience": 2})
    for v in (1.0, 2.0):
        a.observe({"epoch": 1, "val_loss": v})
    b = SCHEDULES.create({"type": "reduce_on_plateau", "patience": 2})
    b.load_state_dict(a.state_dict())
    assert b(2, BASE, TOTAL) == a(2, BASE, TOTAL) == BASE
    for s in (a, b):
        s.observe({"epoch": 3, "val_loss": 1.5})
    assert b(3, BASE, TOTAL) == a(3, BASE, TOTAL) == pytest.approx(BASE * 0.1)


def test_accuracy_monitor_maximises():
    got = rates({"type": "reduce_on_plateau", "monitor": "val_accuracy", "patience": 1, "factor": 0.5}, epochs=3,
                rows=[{"val_accuracy": 0.5}, {"val_accuracy": 0.6}, {"val_accuracy": 0.6}])
    assert got == pytest.approx([BASE, BASE, BASE])


def test_bad_schedules_are_config_errors():
    with pytest.raises(ConfigError, match="unknown schedule 'cosin'. Did you mean 'cosine'"):
        SCHEDULES.create("cosin", ("training", "schedule"))
    with pytest.raises(ConfigError, match="warmup cannot wrap another warmup"):
        SCHEDULES.create({"type": "warmup", "then": "warmup"})


@pytest.mark.parametrize("factor", [0, 1, 1.5])
def test_reduce_on_plateau_factor_must_lower_the_rate(factor):
    """A factor of 0 would stop training and 1 would do nothing: the option's own range says so, naming the key."""
    from nncli.errors import ConfigError
    from nncli.schedules import SCHEDULES

    with pytest.raises(ConfigError, match=r"training\.schedule\.factor: must be in \(0, 1\)"):
        SCHEDULES.create({"type": "reduce_on_plateau", "factor": factor}, ("training", "schedule"))
