"""The package's shape, checked from its source: layers import only downward, no stage module
imports another, no function over 80 lines and no module over 800 (README, Layout)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "facevoice"
# a layer may import itself and the layers listed after it
LAYERS = {
    "common": {"common"},
    "data": {"data", "common"},
    "preprocess": {"preprocess", "data", "common"},
    "training": {"training", "data", "common"},
    "evaluation": {"evaluation", "training", "data", "common"},
    "demo": {"demo", "preprocess", "data", "common"},
}
# modules run by a rule (workflow/rules/<name>.smk): none imports another
STAGES = {"frames", "faces", "speech", "features", "shards", "report", "train", "embed", "trials",
          "evaluate", "generate", "compare", "fame"}
MAX_FUNCTION, MAX_MODULE = 80, 800


def _modules():
    return sorted(p for p in SRC.rglob("*.py"))


def _name(path: Path) -> str:
    return ".".join(("facevoice",) + path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def _imports(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("facevoice"):
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("facevoice")}
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_import_only_downward_and_stages_never_each_other():
    wrong = []
    for path in _modules():
        me = _name(path)
        layer = _layer(me)
        if layer is None:
            continue  # cli, testing: above every layer
        for imp in _imports(ast.parse(path.read_text())):
            other = _layer(imp)
            if imp.split(".")[1:2] and imp.split(".")[1] in ("cli", "testing"):
                wrong.append(f"{me} imports {imp} (a top-level module)")
            elif other is not None and other not in LAYERS[layer]:
                wrong.append(f"{me} imports {imp} (layer {other} is not below {layer})")
            if me.split(".")[-1] in STAGES and imp.split(".")[-1] in STAGES and imp != me and _layer(imp):
                wrong.append(f"stage {me} imports stage {imp}")
    assert not wrong, "\n".join(wrong)


def test_no_long_functions_or_modules():
    long = []
    for path in _modules():
        text = path.read_text()
        n = len(text.splitlines())
        if n > MAX_MODULE:
            long.append(f"{path.relative_to(SRC)}: {n} lines (at most {MAX_MODULE})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {length} lines "
                                f"(at most {MAX_FUNCTION})")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("rule", sorted(p.stem for p in (SRC.parents[1] / "workflow" / "rules").glob("*.smk")
                                        if p.stem != "common"))
def test_each_rule_file_has_its_module(rule):
    assert [p for p in SRC.rglob(f"{rule}.py")], f"workflow/rules/{rule}.smk has no module {rule}.py"
