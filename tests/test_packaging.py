"""The wheel is the product: what ``pip install`` of the built wheel gives a user who has no clone.

Fast part: ``pyproject.toml`` lists every package folder of the repository, its package-data globs
match files that exist and cover every non-Python file of those folders, and the version is written
once (``benchmark --version``, ``CITATION.cff``).

Slow part, as a new user would do it: build the wheel from a copy of the source tree (the files git
knows, so stale ``build/`` output cannot leak in), install it with all its dependencies into a fresh
virtual environment, then run ``benchmark demo`` and ``benchmark run`` from a folder outside the
repository. The fresh environment is a real install from the package index (about 2 minutes on the
development machine, see the README), pinned to the versions of the development environment through
a constraints file, so the test proves both that the wheel carries everything the commands read at
run time and that its declared dependencies are enough.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import distributions
from pathlib import Path

import pandas as pd
import pytest
import yaml

from musicpop.benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGES: list[str] = SETUPTOOLS["packages"]
PACKAGE_DIRS: dict[str, str] = SETUPTOOLS["package-dir"]
PACKAGE_DATA: dict[str, list[str]] = SETUPTOOLS["package-data"]
VERSION: str = PYPROJECT["project"]["version"]
DISTRIBUTION: str = PYPROJECT["project"]["name"]
IMPORT_ROOT = "musicpop"
# the generic names the repository's folders would have as top-level packages
FOLDER_NAMES = sorted(PACKAGE_DIRS.values())

TINY_CONFIG = """
n_folds = 3
n_trials = 2
bootstrap = 200

[models.lightgbm]
max_estimators = 60
min_child_samples = 3     # a tiny demo: the default 20 rows per leaf would allow no split
"""


def _source_files() -> list[str]:
    """Files of the working tree that git tracks or would track (ignored files left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(f for f in set(listed.split("\0")) if f and (REPO / f).is_file())


def _package_of(relative: str) -> str | None:
    """The import package a source file belongs to (the deepest listed package holding it)."""
    best: tuple[int, str] | None = None
    for package in PACKAGES:
        folder = _package_folder(package)
        if Path(relative).parent.is_relative_to(folder):
            depth = len(folder.parts)
            if best is None or depth > best[0]:
                best = (depth, package)
    return None if best is None else best[1]


def _package_folder(package: str) -> Path:
    """``musicpop.benchmark.perf`` -> ``benchmark/perf``, through ``[tool.setuptools.package-dir]``."""
    root = max((p for p in PACKAGE_DIRS if package == p or package.startswith(p + ".")), key=len)
    rest = package[len(root) :].lstrip(".")
    return Path(PACKAGE_DIRS[root], *rest.split(".")) if rest else Path(PACKAGE_DIRS[root])


def _installed_name(relative: str) -> str:
    """Where a source file lands in the wheel: ``benchmark/cli.py`` -> ``musicpop/benchmark/cli.py``."""
    package = _package_of(relative)
    assert package is not None, relative
    inside = Path(relative).relative_to(_package_folder(package))
    return "/".join([*package.split("."), *inside.parts])


def _expected_wheel_files() -> set[str]:
    """Every file of the package folders as the wheel must hold it: modules and data alike."""
    return {_installed_name(f) for f in _source_files() if _package_of(f) is not None}


# --- fast part: pyproject.toml is complete ----------------------------------------------------


def test_every_package_folder_is_listed_and_every_listed_package_exists() -> None:
    found = set()
    for root, folder in PACKAGE_DIRS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rest = init.parent.relative_to(REPO / folder).parts
            found.add(".".join([root, *rest]))
    assert found == set(PACKAGES)
    assert all(p == IMPORT_ROOT or p.startswith(IMPORT_ROOT + ".") for p in PACKAGES)


def test_package_data_globs_match_files_and_cover_every_data_file() -> None:
    shipped = set()
    for package, patterns in PACKAGE_DATA.items():
        assert package in PACKAGES, f"package-data names {package}, which is not a package"
        for pattern in patterns:
            matches = {
                p.relative_to(REPO).as_posix()
                for p in (REPO / _package_folder(package)).glob(pattern)
                if p.is_file()
            }
            assert matches, f"package-data glob {package}: {pattern!r} matches no file"
            shipped |= matches
    data_files = {
        f for f in _source_files() if _package_of(f) is not None and not f.endswith(".py")
    }
    # what the commands read at run time: the Feast repository and the configuration presets
    assert {"feature_repo/feature_store.yaml", "benchmark/configs/quick.toml"} <= data_files
    assert data_files - shipped == set(), "data files the wheel would leave out"


def test_version_is_single_sourced(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out.strip()
    # the installed metadata lags a changed pyproject.toml until a reinstall (make test does one)
    assert printed == f"benchmark ({DISTRIBUTION}) {VERSION}", "reinstall: pip install -e ."
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert str(citation["version"]) == VERSION
    assert citation["license"] == PYPROJECT["project"]["license"]
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## (Unreleased \()?{re.escape(VERSION)}\b", changelog, re.MULTILINE)
    for name in PYPROJECT["project"]["license-files"]:
        assert (REPO / name).is_file(), name


# --- slow part: build, install into a clean environment, run from elsewhere ---------------------


def _run(
    args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))} exited {done.returncode}\n"
        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done


def _clean_env() -> dict[str, str]:
    """The user's environment, less anything that points Python or our code at the repository."""
    drop = ("PYTHON", "VIRTUAL_ENV", "MUSICPOP_", "BENCHMARK_", "MLFLOW_", "CONDA_PREFIX")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1"}


def _constraints(path: Path) -> Path:
    """Pin every distribution the development environment imports (its public version: a local
    ``+cpu`` build still satisfies it), so the clean environment gets the versions the suite runs
    with. The installers themselves (pip, setuptools, wheel) stay as the new environment has them."""
    pins: dict[str, str] = {}
    for dist in distributions():  # in sys.path order: the first of a name is the one imported
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name and name not in {DISTRIBUTION, "pip", "setuptools", "wheel"}:
            pins.setdefault(name, dist.version.split("+")[0])
    path.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built, as ``pip wheel`` builds it, from a copy of the files git knows."""
    root = tmp_path_factory.mktemp("build")
    source = root / "source"
    for relative in _source_files():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", root / "dist", source],
        cwd=root,
        env=_clean_env(),
        timeout=600,
    )
    (built,) = (root / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A user's own project (a git repository, its virtual environment in an ignored ``.venv``)
    with the wheel and its dependencies installed."""
    project = tmp_path_factory.mktemp("user-project")
    env = _clean_env()
    (project / ".gitignore").write_text(".venv/\n")
    (project / "notes.md").write_text("a user's own project\n")
    git = ["git", "-c", "user.name=user", "-c", "user.email=user@example.org"]
    git += ["-c", "commit.gpgsign=false", "-c", f"core.hooksPath={os.devnull}"]
    _run([*git, "init", "-q"], cwd=project, env=env)
    _run([*git, "add", "."], cwd=project, env=env)
    _run([*git, "commit", "-q", "-m", "start"], cwd=project, env=env)
    venv = project / ".venv"
    _run([sys.executable, "-m", "venv", venv], cwd=project, env=env, timeout=300)
    python = venv / "bin" / "python"
    constraints = _constraints(project.parent / "constraints.txt")
    _run(
        [python, "-m", "pip", "install", "-q", "--no-compile", "-c", constraints, wheel],
        cwd=project,
        env=env,
    )
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=project,
        env=env,
    ).stdout.strip()
    return {"project": project, "python": python, "bin": venv / "bin", "purelib": Path(purelib)}


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_data_file_under_one_import_name(wheel: Path) -> None:
    assert wheel.name == f"{DISTRIBUTION.replace('-', '_')}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-{VERSION}.dist-info"
    assert {n.split("/")[0] for n in names} == {IMPORT_ROOT, dist_info}
    assert {n for n in names if n.startswith(IMPORT_ROOT + "/")} == _expected_wheel_files()
    for name in PYPROJECT["project"]["license-files"]:
        assert f"{dist_info}/licenses/{name}" in names


@pytest.mark.slow
def test_installed_tool_imports_from_site_packages_and_adds_no_generic_names(
    installed: dict[str, Path],
) -> None:
    env, python = _clean_env(), installed["python"]
    version = _run([installed["bin"] / "benchmark", "--version"], installed["project"], env)
    assert version.stdout.strip() == f"benchmark ({DISTRIBUTION}) {VERSION}"
    probe = (
        "import importlib.util, musicpop.benchmark.cli as cli, musicpop.feature_repo as repo;"
        f"print(cli.__file__); print(repo.__file__);"
        f"print([n for n in {FOLDER_NAMES!r} if importlib.util.find_spec(n)])"
    )
    cli_file, repo_file, generic = _run(
        [python, "-c", probe], installed["project"], env
    ).stdout.splitlines()
    for path in (cli_file, repo_file):
        assert Path(path).is_relative_to(installed["purelib"]), path
        assert not Path(path).resolve().is_relative_to(REPO), path
    assert generic == "[]"  # `import benchmark`, `import features`, ... are not ours to provide
    _run([python, "-m", "pip", "check"], installed["project"], env)


def _package_tree(purelib: Path) -> set[str]:
    root = purelib / IMPORT_ROOT
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.slow
def test_demo_then_run_from_a_folder_outside_the_repository(
    installed: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from mlflow import MlflowClient

    env, project, cli = _clean_env(), installed["project"], installed["bin"] / "benchmark"
    data_dir = tmp_path_factory.mktemp("datasets") / "tiny"  # a folder the user chose
    tree_before = _package_tree(installed["purelib"])
    (project / "tiny.toml").write_text(TINY_CONFIG)

    _run(
        [cli, "demo", "--out", data_dir, "--songs", "24", "--regions", "2", "--seed", "3"],
        project,
        env,
    )
    run = _run(
        [
            cli,
            "run",
            "--data-dir",
            data_dir,
            "--suite",
            "global_mean,region_mean,lightgbm",
            "--config",
            "tiny.toml",
            "--workers",
            "2",
        ],
        project,
        env,
    )

    # every stage ran, the demo's raw files ingested first
    for stage in (
        "ingest charts",
        "ingest audio",
        "targets",
        "extract features",
        "feast apply + materialize",
    ):
        assert f"[{stage}] done" in run.stdout, stage
    assert (data_dir / "feast" / "registry.db").is_file()
    # outputs land under the folder the command ran from
    summary = pd.read_csv(project / "results" / "tiny" / "summary.csv")
    assert {"global_mean", "region_mean", "lightgbm[essentia]"} == set(summary["model"])
    headline = summary[
        (summary["metric"] == "spearman") & (summary["target"] == "log1p_charted_sum")
    ]
    spearman = headline.set_index("model").loc["lightgbm[essentia]", "value"]
    assert -1.0 <= spearman <= 1.0  # a number (NaN fails): the tuned model was trained and scored
    assert (project / "results" / "tiny" / "report.html").is_file()
    # nothing written into the installed package
    assert _package_tree(installed["purelib"]) == tree_before
    # the installed copy does not claim the commit of the user's repository that holds its venv
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert runs and {r.data.tags.get("git_commit") for r in runs} == {"unknown"}
