"""The command line's skeleton: one parser built from the command groups, help on every option,
no torch to build it, the same program under `scratchdet` and `python -m scratchdet.cli`."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from scratchdet import __version__
from scratchdet.cli import GROUPS, build_parser, main


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every leaf command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _subcommands(child, (*path, name))


def test_every_option_and_command_has_help():
    parser = build_parser()
    missing = []
    for path, command in _subcommands(parser):
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                missing.append(
                    f"scratchdet {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
                )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            missing += [f"scratchdet {c.dest}" for c in action._choices_actions if not c.help]
    assert missing == []


def test_every_group_registers_its_own_top_level_command():
    parser = build_parser()
    [top] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(top.choices) == len(GROUPS)
    assert {
        "data",
        "train",
        "detect",
        "eval",
        "curve",
        "report",
        "workflow",
        "artifacts",
        "benchmark",
        "models",
        "config",
    } == set(top.choices)


@pytest.mark.parametrize(
    "moved, new",
    [
        (["report", "run-config"], ["workflow", "run-config"]),
        (["report", "test-list"], ["data", "test-list"]),
    ],
)
def test_workflow_and_data_helpers_live_with_their_stage(moved, new, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([*moved, "--help"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        parser.parse_args([*new, "--help"])
    assert done.value.code == 0


def test_building_the_parser_and_help_import_no_torch():
    code = (
        "import sys\n"
        "from scratchdet.cli import build_parser\n"
        "p = build_parser()\n"
        "for argv in (['train', '--config', 'c', '--out', 'o'], ['benchmark', 'train']):\n"
        "    p.parse_args(argv)\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_module_and_the_script_are_the_same_program():
    done = subprocess.run(
        [sys.executable, "-m", "scratchdet.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"scratchdet {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "scratchdet", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"scratchdet {__version__}"


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "--gt",
                str(tmp_path / "missing.json"),
                "--dets",
                "d.json",
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scratchdet: error:") and "missing.json" in err[0]


def test_every_lazy_import_of_the_commands_resolves():
    """Commands import the package inside their bodies (a fast --help); a moved module must not
    wait for the command's first real run to show up."""
    import ast
    import importlib
    import importlib.util
    from pathlib import Path

    import scratchdet.cli

    broken = []
    for path in Path(scratchdet.cli.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = "scratchdet.cli" if node.level == 1 else "scratchdet"
                name = base + (f".{node.module}" if node.module else "")
                module = importlib.import_module(name)
                broken += [
                    f"{path.name}: {name}.{a.name}"
                    for a in node.names
                    if not hasattr(module, a.name)
                    and importlib.util.find_spec(f"{name}.{a.name}") is None
                ]
    assert broken == []


def test_workflow_run_config_writes_the_validated_yaml(tmp_path):
    out = tmp_path / "run.yaml"
    assert (
        main(
            ["workflow", "run-config", "--json", '{"data": {"train": "t.json"}}', "--out", str(out)]
        )
        == 0
    )
    assert "batch_size: 32" in out.read_text()  # the defaults filled in
    assert (
        main(
            [
                "workflow",
                "run-config",
                "--json",
                '{"train": {"lr": -1}}',
                "--out",
                str(tmp_path / "bad.yaml"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "bad.yaml").exists()


def test_every_out_option_is_declared_by_scratchdet_cli_options():
    """One declaration per kind of ``--out`` (written output, optional copy, benchmark result), so
    that they stay alike; every command that writes a file has one."""
    from pathlib import Path

    import scratchdet

    package = Path(scratchdet.__file__).parent
    for path in [*(package / "cli").glob("*.py"), package / "benchmark" / "arguments.py"]:
        if path.name != "options.py":
            assert 'add_argument("--out"' not in path.read_text(), path
    for argv, required in (
        (["report", "page"], True),
        (["data", "check"], False),
        (["benchmark", "matching"], False),
    ):
        parser = build_parser()
        for name in argv:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[name]
        (out,) = (a for a in parser._actions if "--out" in a.option_strings)
        assert out.required is required and out.help, argv
