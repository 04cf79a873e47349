"""Each subpackage's face: a complete ``__all__`` whose every name resolves, and public
names of the stage modules all reachable from it."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rectune"
FACES = ("data", "evaluation", "tuning", "models", "tracking")


def fresh_python(code: str) -> str:
    """What ``code`` prints in a new interpreter with only the package on its path."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PACKAGE.parent), "OPENBLAS_NUM_THREADS": "1"},
    ).stdout


def public_names(module_path: Path) -> set[str]:
    """Top-level public definitions of a module (functions, classes, constants)."""
    names = set()
    for node in ast.parse(module_path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_") and n != "log"}


@pytest.mark.parametrize("face", FACES)
def test_every_name_in_all_resolves_and_all_is_sorted_and_unique(face):
    module = importlib.import_module(f"rectune.{face}")
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize("face", ("tuning", "evaluation"))
def test_every_public_name_of_a_stage_module_is_on_its_face(face):
    module = importlib.import_module(f"rectune.{face}")
    missing = {
        f"{path.stem}.{name}"
        for path in (PACKAGE / face).glob("[!_]*.py")
        for name in public_names(path)
        if name not in module.__all__
    }
    assert not missing, sorted(missing)


def test_the_tuning_face_is_lazy_so_reading_the_output_file_does_not_load_the_tuner():
    code = (
        "import sys, rectune.tuning.best_params\n"
        "print('rectune.tuning.study' in sys.modules, 'rectune.tuning.trial' in sys.modules)"
    )
    assert fresh_python(code).split() == ["False", "False"]


def test_every_module_imports_first_in_a_fresh_interpreter():
    """No import cycle: each module of the package can be the first one imported, as
    MLflow's model server imports the pyfunc model's rectune.recommender first."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import rectune\n"
        "names = sorted(m.name for m in pkgutil.walk_packages(rectune.__path__, 'rectune.')\n"
        "               if not m.name.endswith('pyfunc_model'))\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'rectune']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        print(name, type(err).__name__, err)\n"
        "print(len(names))\n"
    )
    out = fresh_python(code).splitlines()
    assert len(out) == 1 and int(out[0]) > 50, out
