"""Load a facevoice config and check it against the JSON schema before any job runs.

Errors name the key (dotted path) and what is allowed, e.g.::

    config key 'faces.multiple': 'biggest' is not allowed; allowed: reject, largest, central, probable
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_RELPATH = Path("workflow") / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is not valid; the message lists every problem found."""


def find_schema(start: str | Path | None = None) -> Path:
    """Locate workflow/schemas/config.schema.yaml from ``start`` (or cwd) or this package."""
    candidates = []
    for base in [Path(start) if start else Path.cwd(), Path(__file__).resolve().parents[2]]:
        base = base.resolve()
        candidates += [p / SCHEMA_RELPATH for p in [base, *base.parents]]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(
        f"cannot find {SCHEMA_RELPATH}: run from the facevoice repository or pass --schema"
    )


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


def _describe(err: jsonschema.ValidationError) -> str:
    where = _dotted(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        prefix = f"{where}." if err.absolute_path else ""
        return "; ".join(
            f"unknown config key '{prefix}{k}'; allowed keys here: {', '.join(allowed)}" for k in extra
        )
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        prefix = f"{where}." if err.absolute_path else ""
        return f"config key '{prefix}{missing}' is required"
    if v == "enum":
        allowed = ", ".join(str(x) for x in err.validator_value)
        return f"config key '{where}': {err.instance!r} is not allowed; allowed: {allowed}"
    if v == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"config key '{where}': {err.instance!r} has the wrong type; expected {want}"
    return f"config key '{where}': {err.message}"


def validate(config: dict[str, Any], schema_path: str | Path | None = None) -> dict[str, Any]:
    """Raise :class:`ConfigError` listing every problem; return ``config`` when valid."""
    schema = yaml.safe_load(Path(schema_path or find_schema()).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [_describe(e) for e in errors]
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(lines))
    _check_layout(config)
    _check_methods(config)
    return config


def method_names() -> list[str]:
    """The method plug-ins' names, read from the package's files (no torch import)."""
    folder = Path(__file__).resolve().parent / "training" / "methods"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def _check_methods(config: dict[str, Any]) -> None:
    known = method_names()
    for key, names in (("train.methods", (config.get("train") or {}).get("methods") or []),
                       ("generate.methods", (config.get("generate") or {}).get("methods") or [])):
        bad = [n for n in names if n.split("-", 1)[0] not in known]
        if bad:
            raise ConfigError(f"invalid configuration:\n  - {key}: unknown method(s) {', '.join(bad)}; "
                              f"known: {', '.join(known)} (`facevoice train --list` lists their variants)")


def _check_layout(config: dict[str, Any]) -> None:
    inp = config["input"]
    need = {"videos": ["videos"], "voxceleb1": ["wav", "face_frames"], "mavceleb": ["voices", "faces"]}[inp["layout"]]
    missing = [k for k in need if not inp.get(k)]
    if missing:
        keys = ", ".join(f"'input.{k}'" for k in missing)
        raise ConfigError(f"invalid configuration:\n  - input.layout is {inp['layout']!r}, so {keys} must be set")


def load(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Load and validate a config file."""
    return validate(load_yaml(path), schema_path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facevoice check-config", description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="config.yaml")
    ap.add_argument("--schema", default=None)
    args = ap.parse_args(argv)
    try:
        load(args.config, args.schema)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.config}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
