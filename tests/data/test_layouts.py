"""The input layouts' declarations (facevoice.data.layouts): for every layout, a valid config and
invalid ones (a required key unset, a path that does not exist) get the same verdict and the same
message from `facevoice check-config` and from the workflow's planning (`snakemake -n`); the
schema's enum, the schema's input: keys and README's table agree with the declarations."""

import copy
import re

import pytest
from helpers import REPO
from layout_trees import TREES, check_both, check_config_main

from facevoice.common.config import subschema
from facevoice.data.inputs import InputError
from facevoice.data.layouts import LAYOUTS, named


def test_every_layout_has_a_test_tree():
    assert list(TREES) == list(LAYOUTS)


def test_the_schema_enum_is_the_registry():
    assert subschema("input.layout")["enum"] == list(LAYOUTS)


def test_the_schema_input_keys_are_the_declared_keys():
    declared = {k.name for layout in LAYOUTS.values() for k in layout.keys}
    assert set(subschema("input")["properties"]) - {"layout"} == declared


def test_readme_table_names_each_layouts_keys():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, layout in LAYOUTS.items():
        rows = [ln for ln in readme.splitlines() if ln.startswith(f"| `{name}` |")]
        assert len(rows) == 1, f"README has {len(rows)} table rows of layout {name}"
        required, optional = rows[0].strip("|").split("|")[2:4]
        assert re.findall(r"`input\.(\w+)`", required) == [k.name for k in layout.required], rows[0]
        assert re.findall(r"`input\.(\w+)`", optional) == [k.name for k in layout.optional], rows[0]


def test_an_unknown_layout_names_the_known_ones():
    with pytest.raises(InputError, match="unknown input.layout 'flat'; known layouts: " + ", ".join(LAYOUTS)):
        named("flat")


def _path_key(layout):
    return next(k for k in layout.required if k.kind)


# (layout, change): each through check-config and snakemake -n (a few seconds each)
CASES = [(name, change) for name in LAYOUTS for change in (None, "unset", "no such path")]


@pytest.mark.parametrize("name, change", CASES, ids=[f"{n}-{c or 'valid'}" for n, c in CASES])
def test_check_config_and_a_run_agree_on_every_layout(tmp_path, capsys, name, change):
    layout, cfg, error = LAYOUTS[name], TREES[name](tmp_path), None
    key = _path_key(layout)
    if change == "unset":
        cfg["input"][key.name] = None
        error = f"input.layout is {name!r}, so 'input.{key.name}' must be set"
    elif change == "no such path":
        cfg["input"][key.name] = str(tmp_path / "nowhere")
        error = f"config key 'input.{key.name}': {key.kind} not found: {tmp_path / 'nowhere'}"
    check_both(tmp_path, capsys, cfg, error)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_key_of_every_layout_is_checked(tmp_path, capsys, name):
    """check-config alone (the run shares its check_run): each required key unset, each path
    key pointing nowhere, each optional key left out (valid)."""
    layout, base = LAYOUTS[name], TREES[name](tmp_path)
    for key in layout.required:
        cfg = copy.deepcopy(base)
        cfg["input"][key.name] = ""
        rc, err = check_config_main(tmp_path, capsys, cfg)
        assert rc == 1 and f"input.layout is {name!r}, so 'input.{key.name}' must be set" in err, err
    for key in layout.keys:
        if key.kind:
            cfg = copy.deepcopy(base)
            cfg["input"][key.name] = str(tmp_path / "nowhere")
            rc, err = check_config_main(tmp_path, capsys, cfg)
            assert rc == 1 and f"config key 'input.{key.name}': {key.kind} not found" in err, err
    for key in layout.optional:
        cfg = copy.deepcopy(base)
        cfg["input"].pop(key.name, None)
        rc, err = check_config_main(tmp_path, capsys, cfg)
        assert rc == 0, err


def _official(root, cfg, change):
    """The flat official test set beside the MAV-Celeb tree, with one ``change`` (None: valid)."""
    from mavceleb_trees import make_official

    section = make_official(root)
    cfg["fame"] = {"train_language": ["English", "Urdu"], "version": "v1", "official": section}
    if change == "unset":
        cfg["fame"]["official"]["lists"] = None
        return "fame.official is set (the challenge's official test set), so 'fame.official.lists' must be set"
    if change == "no such path":
        cfg["fame"]["official"]["root"] = str(root / "nowhere")
        return f"config key 'fame.official.root': folder not found: {root / 'nowhere'}"
    if change == "missing file":
        (root / "official" / "faces" / "English" / "00001.jpg").unlink()
        return "English_test.txt:2: the face 'faces/English/00001.jpg' is not a file under fame.official.root"
    if change == "other version's language":
        (root / "official" / "lists" / "Urdu_test.txt").rename(root / "official" / "lists" / "Hindi_test.txt")
        return "fame.official.lists: ['Hindi'] is not a language of MAV-Celeb v1 (English-Urdu"
    if change == "without fame":
        cfg["fame"]["train_language"] = None
        return "fame.official is set, but fame.train_language is not"
    return None


OFFICIAL_CASES = [None, "unset", "no such path", "missing file", "other version's language", "without fame"]


@pytest.mark.parametrize("change", OFFICIAL_CASES, ids=[c or "valid" for c in OFFICIAL_CASES])
def test_the_official_test_set_is_checked_by_check_config_and_a_run(tmp_path, capsys, change):
    """The FAME official test set's declaration (layouts.FAME_OFFICIAL, config fame.official):
    a valid config and invalid ones get the same verdict and message from both."""
    cfg = TREES["mavceleb"](tmp_path)
    error = _official(tmp_path, cfg, change)
    check_both(tmp_path, capsys, cfg, error)


def test_the_official_test_set_lists_a_clip_per_line(tmp_path):
    """fame.official's clip table: a clip per list line (<Language>/test/<key>), its face the
    line's image and its voice the line's wav, batched per language like the run's clips."""
    from mavceleb_trees import OFFICIAL

    from facevoice.check import check_run
    from facevoice.data.layouts import FAME_OFFICIAL, official_table

    cfg = TREES["mavceleb"](tmp_path)
    _official(tmp_path, cfg, None)
    cfg["batches"] = {"max_clips": 1}
    check_run(cfg, tmp_path)
    table = official_table(cfg)
    want = sorted(f"{lang}/test/{key}" for lang, items in OFFICIAL.items() for key, _, _ in items)
    assert table["clip"].tolist() == want
    row = table.set_index("clip").loc["English/test/k0000002"]
    assert (row["identity"], row["split"], row["language"], row["part"]) == ("English", "test", "English", "001")
    assert row["frames_source"].endswith("official/faces/English/00001.jpg")
    assert row["speech_source"].endswith("official/voices/English/00000.wav")
    assert FAME_OFFICIAL.paths() == {"fame.official.root": "folder", "fame.official.lists": "folder"}
    source = {"layout": FAME_OFFICIAL.name, **cfg["fame"]["official"]}
    from facevoice.data.inputs import batch_clips

    assert [r[0] for r in batch_clips(source, "English", "English", "001", 1)] == ["English/test/k0000002"]
