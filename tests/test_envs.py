"""The conda environments (envs/*.yaml) match the code and the project's pins.

For every rule the workflow defines (read through Snakemake's API, so rule files added later
are covered without changing this test):

- it declares a ``conda:`` environment and a ``log:`` (rules that run nothing, like ``all``,
  are exempt);
- the module it runs (``"$FACEVOICE_PYTHON" -m facevoice.X`` in its shell command; a
  ``script:``; the code of a ``run:`` block), every ``facevoice`` module that one imports,
  transitively, and the method plug-ins named by string, import only third-party packages that
  the rule's environment lists. Imports inside functions count: a code path that imports a
  package must find it. Import names map to distributions through the installed metadata
  (``PIL`` -> pillow, ``sklearn`` -> scikit-learn, ``webrtcvad`` -> webrtcvad-wheels, ...);
- every package an environment lists is pinned, to the version in ``requirements.lock``.

The driver environment (``envs/driver.yaml`` and its pip twin ``envs/driver.txt``: Snakemake
and what planning imports) is checked too: both files name the same packages at the lock's
versions, and every third-party package that the workflow imports while it plans (the rule
files' own imports and, following them, the module-level imports of the facevoice modules they
name; not imports inside functions, which run in jobs) is in it.

Conda channels are not reachable here, so the environments are checked, not built
(``tests/test_driver.py`` builds the driver from driver.txt with pip and plans a run with it).
"""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import yaml
from workflow_rules import REPO, rules, tiny_tree

SRC = REPO / "src"
ENVS = REPO / "envs"
LOCK = REPO / "requirements.lock"
# conda-forge names that differ from the PyPI names of requirements.lock
CONDA_TO_PYPI = {"pysoundfile": "soundfile", "pytorch": "torch", "py-opencv": "opencv-python",
                 "snakemake-minimal": "snakemake"}
DRIVER_YAML, DRIVER_TXT = ENVS / "driver.yaml", ENVS / "driver.txt"
NOT_PACKAGES = {"python", "pip"}
MODULE_RE = re.compile(r"-m\s+(facevoice(?:\.[A-Za-z_]\w*)*)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[norm(name)] = version.strip()
    return pins


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'numpy=2.4.6' / 'torch==2.14.1' / 'pip' -> (normalised PyPI name, version or None)."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:(==|=)\s*([^\s,;<>=!]+))?\s*$", spec)
    if not m:
        return norm(spec.split()[0]), f"unsupported spec {spec!r}"
    name = norm(m.group(1))
    return norm(CONDA_TO_PYPI.get(name, name)), m.group(3)


def read_env(path: Path) -> dict[str, str | None]:
    """Packages of an environment file: {PyPI name: version}, conda and pip sections alike."""
    doc = yaml.safe_load(path.read_text())
    out = {}
    for dep in doc.get("dependencies") or []:
        specs = dep.get("pip", []) if isinstance(dep, dict) else [dep]
        for spec in specs:
            name, version = parse_spec(str(spec))
            out[name] = version
    return out


# --- what a module imports -----------------------------------------------------------------

def module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _optional(node: ast.AST, parents: dict) -> bool:
    """An import inside `try: ... except ImportError` (optional; the code copes without it)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for h in node.handlers:
                names = {getattr(n, "id", None) for n in ([h.type] if not isinstance(h.type, ast.Tuple) else h.type.elts)}
                if names & {"ImportError", "ModuleNotFoundError"}:
                    return True
    return False


def _in_function(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


def imports_in(source: str, package: str = "facevoice", toplevel: bool = False) -> tuple[set[str], set[str]]:
    """(facevoice modules, third-party top-level import names) imported anywhere in source
    (``toplevel``: only those that importing the module runs, none inside a function)."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    ours, theirs = set(), set()

    def add(name: str):
        if name.split(".")[0] == "facevoice":
            ours.add(name)
        elif name.split(".")[0] not in sys.stdlib_module_names and name != "__future__":
            theirs.add(name.split(".")[0])

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and _optional(node, parents):
            continue
        if toplevel and (isinstance(node, ast.Constant) or _in_function(node, parents)):
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            add(base)
            if base.split(".")[0] == "facevoice":
                for a in node.names:  # `from facevoice import faces`: faces is a module
                    if module_file(f"{base}.{a.name}"):
                        ours.add(f"{base}.{a.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # plug-ins loaded by name (importlib.import_module("facevoice.training.methods.dje"))
            if re.fullmatch(r"facevoice(\.\w+)+", node.value) and module_file(node.value):
                ours.add(node.value)
    return ours, theirs


def third_party_of(modules: set[str], extra_sources: list[str] = (), seen: set | None = None,
                   toplevel: bool = False) -> dict[str, str]:
    """{import name: the facevoice module (or rule code) importing it}, following our imports.

    ``seen``, when given, receives every facevoice module reached. ``toplevel``: what importing
    ``modules`` runs (module-level imports only; plug-ins loaded by name are not).
    """
    seen = set() if seen is None else seen
    todo, found = list(modules), {}
    for i, src in enumerate(extra_sources):
        ours, theirs = imports_in(src)
        todo += sorted(ours)
        for t in theirs:
            found.setdefault(t, "the rule's run: block")
    while todo:
        mod = todo.pop()
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        chain = [".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 2)]
        for m in chain:
            if m in seen:
                continue
            seen.add(m)
            path = module_file(m)
            if path is None:
                found.setdefault(f"<missing module {m}>", m)
                continue
            pkg = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
            source = path.read_text()
            ours, theirs = imports_in(source, pkg, toplevel)
            if not toplevel and path.name == "__init__.py" and re.search(r"\bimport_module\(|\bpkgutil\b", source):
                # a package that loads its modules by name (plug-ins): all of them count
                ours |= {f"{m}.{f.stem}" for f in path.parent.glob("*.py") if f.name != "__init__.py"}
            for t in theirs:
                found.setdefault(t, m)
            todo += sorted(ours - seen)
    return found


def distributions(import_names: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Map import names to PyPI distributions; also the import names nothing provides."""
    provided = importlib.metadata.packages_distributions()
    dists, unknown = {}, []
    for name, where in import_names.items():
        if name.startswith("<missing module"):
            unknown.append(f"{where} is imported but src/ has no such module")
        elif name in provided:
            for d in provided[name]:
                dists.setdefault(norm(d), f"{where} (import {name})")
        else:
            unknown.append(f"{where} imports {name!r}, which no installed distribution provides")
    return dists, unknown


# --- the checks ----------------------------------------------------------------------------

def rule_code(rule: dict) -> tuple[set[str], list[str]]:
    """The facevoice modules a rule runs, and code (run: block, script) to scan directly."""
    modules = set(MODULE_RE.findall(rule["shell"] or ""))
    sources = []
    if rule["is_run"] and rule["run_src"]:
        import textwrap

        sources.append(textwrap.dedent(rule["run_src"]))
    if rule["script"]:
        script = Path(rule["basedir"]) / rule["script"]
        sources.append(script.read_text())
    return modules, sources


def env_problems(all_rules: list[dict], envs: dict[Path, dict[str, str | None]]) -> list[str]:
    """Rules whose environment lacks a package their code imports."""
    problems = []
    for rule in all_rules:
        if rule["norun"] or not rule["conda"]:
            continue
        env_path = (Path(rule["basedir"]) / rule["conda"]).resolve()
        if env_path not in envs:
            problems.append(f"rule {rule['name']}: conda environment {rule['conda']} does not exist")
            continue
        modules, sources = rule_code(rule)
        if not modules and not sources:
            problems.append(
                f"rule {rule['name']} ({rule['snakefile']}): cannot tell which module it runs; run "
                'stages as `"$FACEVOICE_PYTHON" -m facevoice.<module>` (or use script:/run:)')
            continue
        dists, unknown = distributions(third_party_of(modules, sources))
        problems += [f"rule {rule['name']}: {u}" for u in unknown]
        env = envs[env_path]
        for dist, where in sorted(dists.items()):
            if dist not in env:
                problems.append(f"rule {rule['name']}: {where} needs {dist}, which "
                                f"{env_path.relative_to(REPO)} does not list")
    return problems


def pin_problems(envs: dict[Path, dict[str, str | None]], lock: dict[str, str]) -> list[str]:
    problems = []
    for path, pkgs in sorted(envs.items()):
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        for name, version in sorted(pkgs.items()):
            if name in NOT_PACKAGES:
                continue
            if name not in lock:
                problems.append(f"{rel}: {name} is not in requirements.lock (add it there first)")
            elif version is None:
                problems.append(f"{rel}: {name} is not pinned (requirements.lock has {lock[name]})")
            elif version != lock[name]:
                problems.append(f"{rel}: {name} {version} differs from requirements.lock's {lock[name]}")
        if not pkgs.get("python"):
            problems.append(f"{rel}: python is not pinned")
    return problems


@pytest.fixture(scope="module")
def workflow_rules(tmp_path_factory):
    root = tmp_path_factory.mktemp("envs")
    tiny_tree(root)
    return rules(root)


@pytest.fixture(scope="module")
def envs():
    """The rules' environments (every file of envs/ but the driver's)."""
    return {p.resolve(): read_env(p) for p in sorted(ENVS.glob("*.yaml")) if p != DRIVER_YAML}


def test_every_rule_declares_its_conda_environment_and_log(workflow_rules):
    assert len(workflow_rules) > 10  # the API saw the whole workflow
    missing = [f"rule {r['name']} ({r['snakefile']}): no {what}"
               for r in workflow_rules if not r["norun"]
               for what, ok in (("conda:", r["conda"]), ("log:", r["log"])) if not ok]
    assert not missing, "\n".join(missing)


def test_every_environment_has_what_its_rules_import(workflow_rules, envs):
    problems = env_problems(workflow_rules, envs)
    assert not problems, "\n".join(problems)


def test_environment_versions_are_the_lock_pins(envs):
    problems = pin_problems(envs, read_lock())
    assert not problems, "\n".join(problems)
    assert "python" in NOT_PACKAGES and all(pkgs.get("python") for pkgs in envs.values())


def test_every_environment_file_is_used(workflow_rules, envs):
    used = {(Path(r["basedir"]) / r["conda"]).resolve() for r in workflow_rules if r["conda"]}
    assert not set(envs) - used, f"unused environment files: {sorted(map(str, set(envs) - used))}"


def test_the_check_catches_a_missing_package_and_a_drifted_version(workflow_rules, envs):
    """The two failures this file guards against, made on purpose."""
    faces = next(r for r in workflow_rules if r["name"] == "faces")
    env_path = (Path(faces["basedir"]) / faces["conda"]).resolve()
    broken = copy.deepcopy(envs)
    del broken[env_path]["facenet-pytorch"]
    problems = env_problems(workflow_rules, broken)
    assert any(p.startswith("rule faces:") and "facenet-pytorch" in p for p in problems), problems
    # a package imported only inside a function, two modules away (train -> methods -> nets ->
    # facenet_pytorch), and the method plug-ins, which the methods package loads by name
    train = next(r for r in workflow_rules if r["name"] == "train")
    reached = set()
    deps = third_party_of(rule_code(train)[0], seen=reached)
    assert {"torch", "facenet_pytorch"} <= set(deps), deps
    assert deps["facenet_pytorch"] == "facevoice.training.nets", deps
    plugins = {f"facevoice.training.methods.{f.stem}" for f in (SRC / "facevoice" / "training" / "methods").glob("*.py")
               if f.name != "__init__.py"}
    assert plugins and plugins <= reached, plugins - reached
    broken = copy.deepcopy(envs)
    broken[env_path]["numpy"] = "1.0.0"
    assert any("numpy 1.0.0 differs" in p for p in pin_problems(broken, read_lock()))


# --- the driver environment ----------------------------------------------------------------

# `from facevoice.x import ...` / `import x` at the start of a line of a rule file: run while
# Snakemake parses it (indented imports are in run: blocks, which jobs run)
SMK_IMPORT_RE = re.compile(r"^(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.M)


def planning_imports() -> dict[str, str]:
    """{import name: where}: the third-party packages the workflow imports while it plans."""
    modules, found = set(), {}
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        for m in SMK_IMPORT_RE.finditer(path.read_text()):
            name = m.group(1) or m.group(2)
            if name.split(".")[0] == "facevoice":
                modules.add(name)
            elif name.split(".")[0] not in sys.stdlib_module_names:
                found.setdefault(name.split(".")[0], path.name)
    return {**found, **third_party_of(modules, toplevel=True)}


def read_requirements(path: Path) -> dict[str, str | None]:
    return dict(parse_spec(ln.split("#", 1)[0]) for ln in path.read_text().splitlines() if ln.split("#", 1)[0].strip())


def test_the_driver_files_agree_and_are_the_lock_pins():
    conda, pip = read_env(DRIVER_YAML), read_requirements(DRIVER_TXT)
    assert {k: v for k, v in conda.items() if k not in NOT_PACKAGES} == pip
    assert not pin_problems({DRIVER_YAML.resolve(): conda, DRIVER_TXT.resolve(): {**pip, "python": conda["python"]}},
                            read_lock())


def test_the_driver_has_what_planning_imports():
    dists, unknown = distributions(planning_imports())
    assert not unknown, unknown
    assert {"snakemake", "pandas", "pyarrow"} <= set(dists), dists  # the scan saw the workflow's imports
    driver = read_requirements(DRIVER_TXT)
    missing = [f"{where} needs {dist}" for dist, where in sorted(dists.items()) if dist not in driver]
    assert not missing, "envs/driver.txt and driver.yaml lack what planning imports:\n" + "\n".join(missing)
    # what the scan leaves out: imports inside functions (jobs'), e.g. the metrics' scikit-learn;
    # a module-level PyTorch import is seen
    assert "torch" not in planning_imports()
    metrics = {"facevoice.evaluation.metrics"}
    assert "sklearn" in third_party_of(metrics) and "sklearn" not in third_party_of(metrics, toplevel=True)
    assert "torch" in third_party_of({"facevoice.training.train"}, toplevel=True)
