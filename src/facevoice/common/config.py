"""Load a facevoice config, complete it with the schema's defaults and check it before any job runs.

``workflow/schemas/config.schema.yaml`` is the one place that holds the pipeline's defaults
(``default:`` entries). :func:`validate` fills them into a config, in place, while checking
it; the workflow (``workflow/rules/common.smk``) and ``facevoice check-config`` both call it
through :func:`facevoice.check.check_run`, so a run and the check see the same complete config. A config file stands alone: the keys it
leaves out take the schema's defaults, never the values of another file (the Snakefile reads
the repository's ``config.yaml`` only when no ``--configfile`` is given). Stage modules are
given complete sections and fill in nothing themselves (:func:`check_section`);
:func:`defaults` and :func:`section` complete a section for tests and for modules run by hand.

Errors name the key (dotted path) and what is allowed, e.g.::

    config key 'faces.multiple': 'biggest' is not allowed; allowed: reject, largest, central, probable

Besides the schema, :func:`validate` checks the methods' and overrides' names, and what its
``checks`` add: the keys each ``input.layout`` needs and ``fame`` only on a layout with
languages are :func:`facevoice.data.layouts.validate`'s (the layouts are declared in the data
layer, above this one). ``facevoice check-config`` is :mod:`facevoice.check`.
"""

from __future__ import annotations

import ast
import copy
import functools
from pathlib import Path
from typing import Any, Callable, Iterator

import jsonschema
import yaml

SCHEMA_RELPATH = Path("workflow") / "schemas" / "config.schema.yaml"
# the paths a run reads besides its input layout's (:func:`check_paths`), checked when set
OTHER_PATHS = {"evaluation.pins.dir": "folder", "train.face_weights": "file"}


class ConfigError(ValueError):
    """The configuration is not valid; the message lists every problem found."""


def find_schema(start: str | Path | None = None) -> Path:
    """Locate workflow/schemas/config.schema.yaml from ``start`` (or cwd) or this package."""
    candidates = []
    for base in [Path(start) if start else Path.cwd(), Path(__file__).resolve().parents[3]]:
        base = base.resolve()
        candidates += [p / SCHEMA_RELPATH for p in [base, *base.parents]]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(
        f"cannot find {SCHEMA_RELPATH}: run from the facevoice repository or pass --schema"
    )


@functools.lru_cache(maxsize=8)
def _read_schema(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def schema(schema_path: str | Path | None = None) -> dict[str, Any]:
    """The config schema (read once per process; callers must not modify it)."""
    return _read_schema(str(Path(schema_path or find_schema()).resolve()))


def subschema(name: str, schema_path: str | Path | None = None) -> dict[str, Any]:
    """The schema of one section: ``speech``, or a dotted name such as ``speech.webrtcvad``."""
    sub = schema(schema_path)
    for part in name.split("."):
        props = sub.get("properties") or {}
        if part not in props:
            raise ConfigError(f"the config has no section '{name}'")
        sub = props[part]
    return sub


def fill(sub: dict[str, Any], instance: Any) -> Any:
    """Set every absent key of ``instance`` that schema ``sub`` gives a default, in place,
    section by section (a section's ``default: {}``, then its own keys' defaults); returns it.

    Only ``properties`` and a list's ``items`` are followed (never ``if``/``anyOf`` branches), before any check, so
    the checks see the complete config whatever the order of the schema's keywords.
    """
    if isinstance(instance, dict):
        for key, s in (sub.get("properties") or {}).items():
            if key not in instance and "default" in s:
                instance[key] = copy.deepcopy(s["default"])
            if key in instance:
                fill(s, instance[key])
    elif isinstance(instance, list) and isinstance(sub.get("items"), dict):
        for item in instance:  # a list of sections (e.g. evaluation.declare): each one completed
            fill(sub["items"], item)
    return instance


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, found {type(data).__name__}")
    return data


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(err: jsonschema.ValidationError, base: tuple[str, ...] = ()) -> str:
    path = [*base, *err.absolute_path]
    where = _dotted(path)
    prefix = f"{where}." if path else ""
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return "; ".join(
            f"unknown config key '{prefix}{k}'; allowed keys here: {', '.join(allowed)}" for k in extra
        )
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"config key '{prefix}{missing}' is required"
    if v == "enum":
        allowed = ", ".join(str(x) for x in err.validator_value)
        return f"config key '{where}': {err.instance!r} is not allowed; allowed: {allowed}"
    if v == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"config key '{where}': {err.instance!r} has the wrong type; expected {want}"
    what = " ".join(str(err.schema.get("description") or "").split())
    if v in ("anyOf", "oneOf") and what:
        return f"config key '{where}': {err.instance!r} is not allowed; {what}"
    return f"config key '{where}': {err.message}" + (f" ({what})" if what else "")


def _errors(sub: dict[str, Any], instance: Any, base: tuple[str, ...] = ()) -> list[str]:
    """Every problem of ``instance`` against schema ``sub``, as messages naming the keys."""
    validator = jsonschema.Draft202012Validator(sub)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(e, base) for e in errors]


def _raise(lines: list[str], what: str = "invalid configuration") -> None:
    if lines:
        raise ConfigError(f"{what}:\n  - " + "\n  - ".join(lines))


def validate(config: dict[str, Any], schema_path: str | Path | None = None,
             checks: tuple[Callable[[dict[str, Any]], list[str]], ...] = ()) -> dict[str, Any]:
    """Complete ``config`` with the schema's defaults, in place, and check it.

    ``checks``: further checks of the complete config, each returning its problems (reported
    with the methods' names; :func:`facevoice.data.layouts.validate` adds the layout's).
    Raises :class:`ConfigError` listing every problem; returns ``config``.
    """
    sub = schema(schema_path)
    _raise(_errors(sub, fill(sub, config)))
    _raise([line for check in checks for line in check(config)] + _method_problems(config))
    return config


def defaults(section: str | None = None, schema_path: str | Path | None = None) -> dict[str, Any]:
    """The complete default config, or one section's (a dotted name such as ``speech.webrtcvad``).

    The keys without a default (``dataset``, ``input``'s ``layout`` and ``splits``, the whole
    ``input`` section in the complete config) are absent.
    """
    sub = subschema(section, schema_path) if section else schema(schema_path)
    return fill(sub, {})


def section(name: str, values: dict[str, Any] | None = None,
            schema_path: str | Path | None = None) -> dict[str, Any]:
    """A copy of ``values`` (part of section ``name``) completed with the schema's defaults
    and checked: the section a stage is given, for tests and modules run by hand."""
    sub = subschema(name, schema_path)
    values = fill(sub, copy.deepcopy(values) if values is not None else {})
    _raise(_errors(sub, values, tuple(name.split("."))))
    return values


def _missing(sub: dict[str, Any], values: dict[str, Any], path: list[str]) -> Iterator[str]:
    for key, s in (sub.get("properties") or {}).items():
        if key not in values:
            yield ".".join([*path, key])
        elif isinstance(values[key], dict) and "properties" in s:
            yield from _missing(s, values[key], [*path, key])


def check_section(name: str, values: Any, schema_path: str | Path | None = None) -> dict[str, Any]:
    """A stage's params: section ``name`` complete and valid; returns a copy.

    Nothing is filled in: a key left out is an error naming it (the workflow passes the
    complete section; :func:`section` completes a partial one).
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{name} params must be a mapping (config {name}:), got {type(values).__name__}")
    sub = subschema(name, schema_path)
    missing = [f"'{k}'" for k in _missing(sub, values, name.split("."))]
    lines = [f"config key{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
             f"{'are' if len(missing) > 1 else 'is'} missing (a stage is given its complete section: "
             f"`facevoice check-config --print` shows it)"] if missing else []
    lines += _errors(sub, values, tuple(name.split(".")))
    _raise(lines, f"invalid {name} params")
    return copy.deepcopy(values)


METHODS_FOLDER = Path(__file__).resolve().parents[1] / "training" / "methods"


def method_names() -> list[str]:
    """The method plug-ins' names, read from the package's files (no torch import)."""
    return sorted(p.stem for p in METHODS_FOLDER.glob("*.py") if not p.stem.startswith("_"))


@functools.lru_cache(maxsize=None)
def has_network(name: str) -> bool:
    """Whether method ``name`` (or ``method-variant``) trains or embeds with a network: its plug-in's
    ``NETWORK`` (default True; False for a scorer without one, ``chance``), read from the plug-in's
    file without importing it (no torch), for the workflow's GPU resource."""
    path = METHODS_FOLDER / f"{name.split('-', 1)[0]}.py"
    if not path.is_file():
        return True
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NETWORK" for t in node.targets):
            return bool(ast.literal_eval(node.value))
    return True


def _method_problems(config: dict[str, Any]) -> list[str]:
    """Names of methods (train.methods, generate.methods, train.overrides' keys) that no plug-in has.

    Variants and hyperparameters are checked against the plug-ins by :func:`facevoice.check.check_run`."""
    known = method_names()
    lines = []
    for key, names in (("train.methods", config["train"]["methods"]), ("generate.methods", config["generate"]["methods"]),
                       ("train.overrides", list(config["train"]["overrides"]))):
        bad = [n for n in names if n.split("-", 1)[0] not in known]
        if bad:
            lines.append(f"{key}: unknown method(s) {', '.join(bad)}; known: {', '.join(known)} "
                         f"(`facevoice train --list` lists their variants)")
    return lines


def check_paths(config: dict[str, Any], inputs: dict[str, str],
                directory: str | Path | None = None) -> list[str]:
    """The paths of a validated config that do not exist, each with its key.

    ``inputs``: the input layout's paths, dotted key -> "folder" or "file"
    (:meth:`facevoice.data.layouts.Layout.paths`); besides them :data:`OTHER_PATHS`. A key
    that is not set is not checked. Relative paths are relative to ``directory`` (default: the
    current folder), as a run's are to the folder Snakemake works in.
    """
    kinds = {**inputs, **OTHER_PATHS}
    problems = []
    for key in [k for k in kinds if _get(config, k)]:
        value = _get(config, key)
        path = Path(directory or ".") / value
        folder = kinds[key] == "folder"
        if not (path.is_dir() if folder else path.is_file()):
            hint = " (build the demo corpus first: `facevoice demo`)" if key.startswith("input.") and "demo" in value else ""
            problems.append(f"config key '{key}': {'folder' if folder else 'file'} not found: {path}{hint}")
    return problems


def _get(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config[part]
    return config


def ordered(config: Any, sub: dict[str, Any]) -> Any:
    """``config`` with its keys in the schema's order (keys the schema does not list last)."""
    if not isinstance(config, dict):
        return config
    props = sub.get("properties") or {}
    keys = [k for k in props if k in config] + [k for k in config if k not in props]
    return {k: ordered(config[k], props.get(k) or {}) for k in keys}


def load(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Load a config file and complete and check it (:func:`validate`)."""
    return validate(load_yaml(path), schema_path)
