"""The package imports and its CLI answers."""

from typer.testing import CliRunner

from tickline.cli import app


def test_cli_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "bench" in result.output
