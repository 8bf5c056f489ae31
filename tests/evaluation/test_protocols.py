"""The test protocols' declarations (facevoice.evaluation.protocols) agree with the data
layer, the comparison's folders and the report's captions."""

from __future__ import annotations

from pathlib import Path

import pytest

from facevoice.data.inputs import PINS_SETS, SEENHEARD
from facevoice.evaluation import protocols as P
from facevoice.evaluation.protocol import MATCHING_STRATA, VERIFICATION_STRATA

REPORT = Path(__file__).resolve().parents[2] / "workflow" / "report"


def test_each_protocol_tests_its_split():
    assert list(P.PROTOCOLS) == ["unseenunheard", "seenheard"]
    assert (P.UNSEEN_UNHEARD.split, P.SEEN_HEARD.split) == ("test", SEENHEARD)
    # the official lists' sets are the protocols' names, per split
    assert PINS_SETS == {p.split: p.name for p in P.PROTOCOLS.values()}
    assert [p.pins_set for p in P.PROTOCOLS.values()] == list(P.PROTOCOLS)
    assert P.by_split("seenheard") is P.SEEN_HEARD and P.by_split("val") is None
    for p in P.PROTOCOLS.values():
        assert (p.verification_strata, p.matching_strata) == (VERIFICATION_STRATA, MATCHING_STRATA)
        assert p.title in p.heading and p.description in p.heading
        assert p.test_set == p.name and not p.filter
    assert len({p.title for p in P.PROTOCOLS.values()}) == len(P.PROTOCOLS)


def test_a_reported_figure_belongs_to_the_protocol_it_names():
    assert P.UNSEEN_UNHEARD.owns({"table": "T1"}) and not P.SEEN_HEARD.owns({"table": "T1"})
    assert P.SEEN_HEARD.owns({"test_set": "seenheard"}) and not P.UNSEEN_UNHEARD.owns({"test_set": "seenheard"})
    with pytest.raises(ValueError, match=r"test_set 'seen-heard': use one of unseenunheard, seenheard"):
        P.SEEN_HEARD.owns({"table": "T1", "test_set": "seen-heard"})


FEMALE = {"name": "female", "title": "Female-only", "split": "test", "description": "female test identities",
          "filter": {"gender": "f"}, "test_set": None}


def test_a_declared_protocol_filters_its_split_and_owns_no_reported_figure_unless_it_names_a_test_set():
    evaluation = {"protocols": ["unseenunheard", "female"], "declare": [FEMALE]}
    assert [p.name for p in P.selected(evaluation)] == ["unseenunheard", "female"]
    f = P.resolve("female", evaluation)
    assert (f.split, f.item_filter, f.pins_set) == ("test", {"gender": ["f"]}, None)
    assert not f.owns({"table": "T1"}) and not f.owns({"test_set": "seenheard"})
    g = P.resolve("female", {"declare": [{**FEMALE, "test_set": "unseenunheard"}]})
    assert g.owns({"table": "T1"}) and not g.owns({"test_set": "seenheard"})


@pytest.mark.parametrize("evaluation, message", [
    ({"protocols": ["female"], "declare": []}, "evaluation.protocols names 'female': no such protocol"),
    ({"protocols": [], "declare": [{**FEMALE, "name": "seenheard"}]}, "'seenheard' is a built-in protocol"),
    ({"protocols": [], "declare": [FEMALE, FEMALE]}, "protocol 'female' is declared twice"),
    ({"protocols": [], "declare": [{**FEMALE, "test_set": "female"}]}, "test_set is 'female': use one of"),
    ({"protocols": [], "declare": [{**FEMALE, "filter": {"age": "30"}}]}, "filter names age: filter on gender"),
])
def test_a_bad_declaration_is_refused_naming_it(evaluation, message):
    with pytest.raises(ValueError, match=message):
        P.selected(evaluation)


def test_every_comparison_output_has_a_caption_that_names_its_protocol():
    kinds = ("protocols", "verification", "1vN", "matching", "retrieval", "roc", "tables")
    for kind in kinds:
        text = (REPORT / f"comparison_{kind}.rst").read_text()
        assert kind == "protocols" or "{{ snakemake.params.heading }}" in text, kind
    assert not (REPORT / "comparison_seenheard.rst").exists()
