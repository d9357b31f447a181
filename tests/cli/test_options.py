"""Options shared by the subcommands."""

from __future__ import annotations

from mlff.cli.main import build_parser


def test_every_dtype_option_defaults_to_the_models_own_dtype():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    defaults = {name: next(a.default for a in command._actions if a.dest == "dtype")
                for name, command in commands.items()
                if any(a.dest == "dtype" for a in command._actions)}
    assert {"md", "export", "evaluate", "validate", "deploy", "ipi"} <= set(defaults)
    # importing converts a foreign model, stored in float64 unless asked
    assert {name: d for name, d in defaults.items() if d is not None} == {"import": "float64"}
