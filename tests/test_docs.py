"""The newcomer's pages stay true: every setting and every setup option is documented."""

from __future__ import annotations

from pathlib import Path

from middleware.settings import env_names
from schemas.setup import SetupSchema

ROOT = Path(__file__).resolve().parents[1]


def test_readme_documents_every_environment_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in env_names() if f"`{name}`" not in readme]
    assert not missing, f"README.md lacks {missing}"


def test_setup_options_page_documents_every_option() -> None:
    page = (ROOT / "docs" / "setup-options.md").read_text()
    missing = [name for name in SetupSchema().fields if f"| `{name}` |" not in page]
    assert not missing, f"docs/setup-options.md lacks {missing}"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_readme_has_no_unfilled_placeholders() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "FIGURES_" not in readme and "TODO" not in readme and "TBD" not in readme
