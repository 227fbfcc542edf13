"""A short run of every atheris fuzz target of fuzz/ (``make fuzz`` runs them longer).

atheris has wheels for Linux on x86_64 only, where the test extra installs it; the
tests are skipped elsewhere, and fail where atheris belongs but is missing.
"""

from __future__ import annotations

import importlib.util
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
SECONDS = 5

if importlib.util.find_spec("atheris") is None:
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        raise ImportError("atheris is missing: pip install -e '.[test]'")
    pytest.skip("atheris has no wheel for this platform", allow_module_level=True)


def load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_run", FUZZ / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", ["tickets", "cookies", "sharelinks"])
def test_a_short_fuzzing_run_finds_nothing(target: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(FUZZ / "run.py"),
            "--seconds",
            str(SECONDS),
            "--artifacts",
            str(tmp_path),
            target,
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=SECONDS + 120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{target}: ok" in done.stdout
    assert not list(tmp_path.iterdir())


def test_the_runner_fails_and_keeps_the_input_when_a_target_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crashing = tmp_path / "fuzz_crash.py"
    crashing.write_text(
        textwrap.dedent(
            """
            import os, sys
            import atheris

            def TestOneInput(data):
                if data.startswith(b"boom"):
                    raise RuntimeError("the planted defect")

            if sys.argv[1:2] == ["--seeds"]:
                os.makedirs(sys.argv[2])
                with open(os.path.join(sys.argv[2], "seed"), "wb") as out:
                    out.write(b"boom")
            else:
                atheris.Setup(sys.argv, TestOneInput)
                atheris.Fuzz()
            """
        )
    )
    runner = load_runner()
    setattr(runner, "TARGETS", {"crash": crashing})  # noqa: B010 (loaded from its path)
    artifacts = tmp_path / "artifacts"
    assert runner.main(["--seconds", "30", "--artifacts", str(artifacts)]) == 1
    out = capsys.readouterr().out
    assert "crash: FAILED" in out and "the planted defect" in out
    kept = list(artifacts.iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("crash-crash-")
    assert kept[0].read_bytes() == b"boom"
