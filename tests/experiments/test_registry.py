"""The experiment registry: every entry is a module with the CLI's three entry points and a
subcommand of ``pyconvnet experiment``; an unknown name is a clear error."""
from __future__ import annotations

import pytest

from pyconvnet import cli, experiments


@pytest.mark.parametrize("name", sorted(experiments.EXPERIMENTS))
def test_every_experiment_is_a_subcommand(name, capsys):
    module = experiments.load(name)
    for attr in ("add_arguments", "run_from_args", "main"):
        assert callable(getattr(module, attr)), f"{module.__name__}.{attr}"
    assert module.__doc__ and module.__doc__.strip()
    with pytest.raises(SystemExit) as e:
        cli.main(["experiment", name, "--help"])
    assert e.value.code == 0
    assert f"pyconvnet experiment {name}" in capsys.readouterr().out


def test_unknown_experiment():
    with pytest.raises(ValueError, match="experiment: expected one of .*relaxed-mnist.*got 'nope'"):
        experiments.load("nope")


def test_speedrun_epochs_list_through_the_cli(capsys):
    # the CLI's own --epochs check (an int for train) must leave an experiment's string alone
    assert cli.main(["experiment", "cifar10-speedrun", "--epochs", "0", "--quick"]) == 2
    assert "--epochs: expected positive numbers" in capsys.readouterr().err
