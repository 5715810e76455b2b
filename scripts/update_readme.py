"""Regenerate the config reference in README.md from the registries (`nncli components --markdown`)."""

from pathlib import Path

from typer.testing import CliRunner

from nncli.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- reference:start -->\n", "<!-- reference:end -->"


def main() -> None:
    reference = CliRunner().invoke(app, ["components", "--markdown"]).stdout.replace("#### ", "### ")
    text = README.read_text()
    i, j = text.index(START) + len(START), text.index(END)
    README.write_text(text[:i] + reference + text[j:])


if __name__ == "__main__":
    main()
