"""The README opens with the two set-up commands, and CI runs exactly the test one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt -e . && "
#: The tests' set-up: the runtime requirements plus the test tools (requirements-dev.txt).
DEV_INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt -e . && "


def opening_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S)
    assert block, "README.md has no code block"
    # Nothing but a title and an introduction may come before the commands.
    assert "\n## " not in text[: block.start()], "the set-up commands must come first"
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_opens_with_two_self_contained_commands():
    main_job, tests = opening_commands()
    assert main_job == INSTALL + (
        ".venv/bin/python src/split_data.py && "
        ".venv/bin/python src/hyperparameter_tuning.py --model als && "
        ".venv/bin/python src/model_training.py --model als --hyperparameters "
        "--register rectune-als && "
        ".venv/bin/python src/evaluate_model.py --model als"
    )
    assert tests == DEV_INSTALL + ".venv/bin/python -m pytest"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == opening_commands()[1]
