"""The house: gpuwatch/'s packages import one way, down the pipeline; nothing else sits at the top."""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpuwatch"
LAYOUT_DOC = PACKAGE.parent / "docs" / "layout.md"

# The pipeline, upstream first. A module may import its own stage or any stage before it, never a later
# one. service and simulate share a floor: both wire the stages below, and neither may import the other.
STAGES: dict[str, int] = {
    "sources": 0,
    "sampler": 1,
    "policy": 2,
    "exposure": 3,
    "service": 4,
    "simulate": 4,
    "cli": 5,
}

# Top-level modules that may stay: the package face, `python -m gpuwatch`, and the two import paths
# users have in their code (each only re-exports from exposure/).
FACES: dict[str, set[str]] = {
    "__init__": set(),
    "__main__": {"cli"},
    "client": {"exposure"},
    "asgi": {"exposure"},
}


def stage_of(module: str) -> str:
    """`gpuwatch.policy.slots` -> `policy`; a top-level module is its own name."""
    return module.split(".")[1]


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every gpuwatch module imported anywhere in the tree, function bodies included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gpuwatch":
            if node.module == "gpuwatch":
                found.extend((node.lineno, f"gpuwatch.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend(
                (node.lineno, alias.name) for alias in node.names if alias.name.startswith("gpuwatch.")
            )
    return found


def back_imports(module: str, source: str) -> list[str]:
    """The imports of one module that run against the pipeline, as 'module:line imports target'."""
    own = stage_of(module)
    problems: list[str] = []
    for line, target in imported_modules(ast.parse(source)):
        if target == "gpuwatch" or target.split(".")[1] == "__version__":
            continue
        theirs = stage_of(target)
        if own in FACES:
            allowed = theirs in FACES[own]
        elif theirs in STAGES:
            allowed = theirs == own or STAGES[theirs] < STAGES[own]
        else:
            allowed = False
        if not allowed:
            problems.append(f"{module}:{line} imports {target}")
    return problems


def all_modules() -> dict[str, str]:
    modules: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts)] = path.read_text(encoding="utf-8")
    return modules


def test_every_import_runs_down_the_pipeline() -> None:
    problems = [
        problem for module, source in all_modules().items() for problem in back_imports(module, source)
    ]
    assert problems == []


def package_graph() -> dict[str, set[str]]:
    """Stage -> the other stages its modules import."""
    graph: dict[str, set[str]] = {stage: set() for stage in STAGES}
    for module, source in all_modules().items():
        own = stage_of(module)
        if own not in STAGES:
            continue
        for _, target in imported_modules(ast.parse(source)):
            theirs = target.split(".")[1] if "." in target else ""
            if theirs in STAGES and theirs != own:
                graph[own].add(theirs)
    return graph


def documented_graph() -> dict[str, set[str]]:
    """The table of docs/layout.md's Imports section: `stage imports a, b` per line."""
    text = LAYOUT_DOC.read_text(encoding="utf-8")
    block = text.split("<!-- imports-table -->", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    graph: dict[str, set[str]] = {}
    for line in block.splitlines():
        stage, _, rest = line.partition(" imports ")
        names = rest.strip()
        graph[stage.strip()] = set() if names == "no other package" else set(names.split(", "))
    return graph


def test_the_documented_import_graph_is_the_codes() -> None:
    assert documented_graph() == package_graph()


def relative_imports(source: str) -> list[int]:
    """Lines of `from . import x` style imports, which the pipeline check could not place."""
    return [
        node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom) and node.level
    ]


def test_imports_are_absolute() -> None:
    found = {module: lines for module, source in all_modules().items() if (lines := relative_imports(source))}
    assert found == {}
    assert relative_imports("from ..exposure import board\n") == [1]


def test_nothing_loose_at_the_top() -> None:
    top = {path.stem for path in PACKAGE.glob("*.py")}
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert top == set(FACES)
    assert packages == set(STAGES)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "gpuwatch.policy.slots",
            "from gpuwatch.exposure.board import Board\n",
            ["gpuwatch.policy.slots:1 imports"],
        ),
        (
            "gpuwatch.sources.model",
            "def f():\n    from gpuwatch.sampler.loop import Sampler\n",
            ["gpuwatch.sources"],
        ),
        (
            "gpuwatch.service.daemon",
            "import gpuwatch.simulate.engine\n",
            ["gpuwatch.service.daemon:1 imports"],
        ),
        ("gpuwatch.exposure.board", "from gpuwatch import client\n", ["gpuwatch.exposure.board:1 imports"]),
        ("gpuwatch.client", "from gpuwatch.policy import admit\n", ["gpuwatch.client:1 imports"]),
    ],
)
def test_a_back_import_is_caught(module: str, source: str, expected: list[str]) -> None:
    problems = back_imports(module, source)
    assert len(problems) == 1
    assert problems[0].startswith(expected[0])


def test_downstream_and_own_stage_imports_pass() -> None:
    source = (
        "from gpuwatch.sources.model import Snapshot\n"
        "from gpuwatch.policy.slots import x\n"
        "from gpuwatch import __version__\n"
    )
    assert back_imports("gpuwatch.policy.engine", source) == []
    assert back_imports("gpuwatch.cli.status", source + "from gpuwatch.service.daemon import run\n") == []


@pytest.mark.parametrize(
    ("public", "home", "names"),
    [
        (
            "gpuwatch.client",
            "gpuwatch.exposure.client",
            ["GpuwatchClient", "AdmitResult", "GpuwatchError", "GpuwatchRequestError", "DEFAULT_URL"],
        ),
        ("gpuwatch.asgi", "gpuwatch.exposure.asgi", ["GpuwatchAdmission", "STATE_KEY"]),
        ("gpuwatch.sampler", "gpuwatch.sampler.loop", ["Sampler"]),
    ],
)
def test_users_import_paths_still_work(public: str, home: str, names: list[str]) -> None:
    for name in names:
        assert getattr(importlib.import_module(public), name) is getattr(importlib.import_module(home), name)


# The policy's stages read the GPU's model only through its face (gpuwatch/policy/model/__init__.py),
# and the model reads none of the stages that read it: its inside can change without touching them.
MODEL = "gpuwatch.policy.model"
AFTER_THE_MODEL = {"forecast", "slots", "states", "verdict", "gpu", "track", "node", "engine", "admission"}


def model_walls(module: str, source: str) -> list[str]:
    """Imports that go round the model's face, or from inside the model out to a later stage."""
    problems = []
    inside = module == MODEL or module.startswith(MODEL + ".")
    for line, target in imported_modules(ast.parse(source)):
        into_the_model = target.startswith(MODEL + ".")
        later_stage = target.startswith("gpuwatch.policy.") and target.split(".")[2] in AFTER_THE_MODEL
        if (into_the_model and not inside) or (inside and later_stage):
            problems.append(f"{module}:{line} imports {target}")
    return problems


def test_the_model_is_reached_only_through_its_face() -> None:
    problems = [
        problem for module, source in all_modules().items() for problem in model_walls(module, source)
    ]
    assert problems == []
    assert all_modules()[MODEL + ".__init__"].count("def step(") == 1


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "gpuwatch.policy.slots",
            "from gpuwatch.policy.model.schedule import Schedule\n",
            ["gpuwatch.policy.slots:1"],
        ),
        (
            "gpuwatch.policy.model.learning",
            "from gpuwatch.policy.slots import headroom\n",
            ["gpuwatch.policy.model.learning:1"],
        ),
        ("gpuwatch.policy.slots", "from gpuwatch.policy.model import Schedule\n", []),
        ("gpuwatch.policy.model.learning", "from gpuwatch.policy.model.history import Point\n", []),
    ],
)
def test_a_way_round_the_face_is_caught(module: str, source: str, expected: list[str]) -> None:
    assert [problem.split(" imports ")[0] for problem in model_walls(module, source)] == expected
