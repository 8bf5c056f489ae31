"""The test protocols' declarations (facevoice.evaluation.protocols) agree with the data
layer, the comparison's folders and the report's captions."""

from __future__ import annotations

from pathlib import Path

import pytest

from facevoice.data.inputs import PINS_SETS, SEENHEARD
from facevoice.evaluation import compare as C
from facevoice.evaluation import protocols as P
from facevoice.evaluation.protocol import MATCHING_STRATA, VERIFICATION_STRATA

REPORT = Path(__file__).resolve().parents[2] / "workflow" / "report"


def test_each_protocol_tests_its_split_and_keeps_todays_folders():
    assert list(P.PROTOCOLS) == ["unseenunheard", "seenheard"]
    assert (P.UNSEEN_UNHEARD.split, P.SEEN_HEARD.split) == ("test", SEENHEARD)
    assert (P.UNSEEN_UNHEARD.folder, P.SEEN_HEARD.folder) == ("", "seenheard")
    # the official lists' sets are the protocols' names, per split
    assert PINS_SETS == {p.split: p.name for p in P.PROTOCOLS.values()}
    assert P.tested_splits() == ["test", "seenheard"]
    assert P.by_split("seenheard") is P.SEEN_HEARD and P.by_split("val") is None
    for p in P.PROTOCOLS.values():
        assert (p.verification_strata, p.matching_strata) == (VERIFICATION_STRATA, MATCHING_STRATA)
        assert p.title in p.heading and p.description in p.heading
    assert len({p.title for p in P.PROTOCOLS.values()}) == len(P.PROTOCOLS)


def test_a_reported_figure_belongs_to_the_protocol_it_names():
    assert P.UNSEEN_UNHEARD.owns({"table": "T1"}) and not P.SEEN_HEARD.owns({"table": "T1"})
    assert P.SEEN_HEARD.owns({"test_set": "seenheard"}) and not P.UNSEEN_UNHEARD.owns({"test_set": "seenheard"})
    with pytest.raises(ValueError, match=r"test_set 'seen-heard': use one of unseenunheard, seenheard"):
        P.SEEN_HEARD.owns({"table": "T1", "test_set": "seen-heard"})


def test_every_comparison_output_has_its_protocols_caption():
    outputs = list(C.OUTPUTS) + list(C.PROTOCOLS_TABLE) + [f"{P.SEEN_HEARD.folder}/{n}" for n in C.OUTPUTS]
    for name in outputs:
        p = P.of_output(name)
        assert p is (P.SEEN_HEARD if name.startswith("seenheard/") else P.UNSEEN_UNHEARD)
    kinds = ("protocols", "verification", "1vN", "matching", "retrieval", "roc", "tables")
    for p in P.PROTOCOLS.values():
        for kind in kinds:
            assert (REPORT / p.caption.format(kind=kind)).exists(), (p.name, kind)
    with pytest.raises(ValueError, match="in no protocol's folder"):
        P.of_output("elsewhere/verification.md")
