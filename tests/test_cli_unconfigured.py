"""`flask --app app ...` on a machine with no secrets: sandbox commands work, others explain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLASK = str(Path(sys.executable).with_name("flask"))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [FLASK, "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sandbox_commands_need_no_secrets() -> None:
    result = _run("sandbox", "--help")
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "seed" in result.stdout


def test_other_commands_name_the_missing_secrets() -> None:
    result = _run("setups", "list")
    assert result.returncode == 1
    assert "SECRET_KEY" in result.stderr and "TOKEN_ENCRYPTION_KEY" in result.stderr
