"""examples/ci/: the GitHub Actions and GitLab CI files parse, and every birefnet-edge command they run exists."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import typer

from birefnet_edge.cli import app

yaml = pytest.importorskip("yaml", reason="pyyaml is not installed")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "ci"


def _shell_lines(doc: dict) -> list[str]:
    """Every shell line of the file: GitHub `run:` blocks and GitLab `script:` lists, continuations joined."""
    blocks: list[str] = []
    for job in doc.get("jobs", {}).values():  # GitHub Actions
        blocks += [step["run"] for step in job.get("steps", []) if "run" in step]
    for job in doc.values():  # GitLab CI
        if isinstance(job, dict) and "script" in job:
            blocks += list(job["script"])
    return [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _invocations(path: Path) -> list[list[str]]:
    lines = _shell_lines(yaml.safe_load(path.read_text()))
    return [shlex.split(line)[1:] for line in lines if line.startswith("birefnet-edge ")]


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_example_runs_existing_commands_and_options(name):
    commands = typer.main.get_command(app).commands
    calls = _invocations(EXAMPLES / name)
    assert [c[0] for c in calls] == ["export", "verify", "parity", "pack", "pack"]
    for call in calls:
        command = commands.get(call[0])
        assert command is not None, f"{name}: birefnet-edge {call[0]} does not exist"
        known = {opt for param in command.params for opt in param.opts}
        unknown = [arg for arg in call[1:] if arg.startswith("--") and arg not in known]
        assert not unknown, f"{name}: birefnet-edge {call[0]} has no option {unknown}"
    export = next(c for c in calls if c[0] == "export")
    assert "--reuse" in export and "$WEIGHTS" in export
    assert any("--junit" in c for c in calls)


def test_ci_examples_pin_the_checkpoint_and_keep_the_reports():
    github = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    gitlab = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    assert "@" in github["env"]["WEIGHTS"] and "@" in gitlab["birefnet-edge"]["variables"]["WEIGHTS"]
    uploads = [s for s in github["jobs"]["export-and-gate"]["steps"] if s.get("uses", "").startswith("actions/upload")]
    assert {s["with"]["path"] for s in uploads} == {"reports/", "packs/"}
    assert gitlab["birefnet-edge"]["artifacts"]["reports"]["junit"] == "reports/junit.xml"
