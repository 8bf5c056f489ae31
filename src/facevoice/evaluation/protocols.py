"""The test protocols, declared once: what each tests and how its comparison is shown.

A protocol is a split of test items and a question about them:

* ``unseenunheard``: the ``test`` split, identities never seen in training;
* ``seenheard``: the ``seenheard`` split (:data:`facevoice.data.inputs.SEENHEARD`, held out by
  :func:`facevoice.data.inputs.heldout_videos`), videos of training identities never read in
  training.

Each :class:`Protocol` names its title (every figure title and table heading of its
comparison carries it), the split it tests, which of the papers' reported figures belong
to it (a figure's ``test_set`` in ``reference_results.yaml``, :data:`DEFAULT_TEST_SET` when
it has none: no figure or table shows another protocol's rows), its strata, the sub-folder
of the comparison folder its tables and plots go to, and the caption of those files in the
Snakemake report (``workflow/report/``).
"""

from __future__ import annotations

from dataclasses import dataclass

from facevoice.data.inputs import SEENHEARD
from facevoice.evaluation.protocol import MATCHING_STRATA, VERIFICATION_STRATA


@dataclass(frozen=True)
class Protocol:
    name: str  #: its key: a reported figure's ``test_set``, the protocols table's column prefix
    title: str  #: for people, in every figure title and table heading
    split: str  #: the split of items it tests
    description: str  #: one line: what the split holds
    folder: str  #: its comparison's sub-folder ("": the comparison folder itself)
    caption: str  #: report caption (workflow/report/) of its comparison files; {kind}: the file's kind
    verification_strata: tuple[str, ...] = VERIFICATION_STRATA
    matching_strata: tuple[str, ...] = MATCHING_STRATA

    @property
    def heading(self) -> str:
        """Its title and description, as figure titles name it."""
        return f"{self.title} ({self.description})"

    def owns(self, figure: dict) -> bool:
        """Whether a reported figure (an entry of a paper's ``figures``) was measured under
        this protocol (its ``test_set``); :func:`figure_test_set` checks the value."""
        return figure_test_set(figure) == self.name


UNSEEN_UNHEARD = Protocol(
    name="unseenunheard", title="Unseen-unheard", split="test",
    description="test identities never seen in training", folder="",
    caption="comparison_{kind}.rst")
SEEN_HEARD = Protocol(
    name="seenheard", title="Seen-heard", split=SEENHEARD,
    description="held-out videos of training identities, never read in training", folder=SEENHEARD,
    caption="comparison_seenheard.rst")

#: Every test protocol by name, the unseen-unheard one first (the comparison's own folder).
PROTOCOLS = {p.name: p for p in (UNSEEN_UNHEARD, SEEN_HEARD)}
#: The ``test_set`` of a reported figure that names none.
DEFAULT_TEST_SET = UNSEEN_UNHEARD.name


def figure_test_set(figure: dict) -> str:
    """A reported figure's protocol name; ValueError naming the value and the choices when it
    names no protocol (a misspelt one would otherwise drop the figure from every table)."""
    name = figure.get("test_set", DEFAULT_TEST_SET)
    if name not in PROTOCOLS:
        raise ValueError(f"reported figure {figure.get('table', '?')} ({figure.get('protocol', '?')}) has "
                         f"test_set {name!r}: use one of {', '.join(PROTOCOLS)} (or leave it out for "
                         f"{DEFAULT_TEST_SET}) in the reference figures YAML")
    return name


def by_split(split: str) -> Protocol | None:
    """The protocol that tests ``split`` (None for a split no protocol tests, e.g. val)."""
    return next((p for p in PROTOCOLS.values() if p.split == split), None)


def of_output(path: str) -> Protocol:
    """The protocol whose comparison holds ``path`` (relative to the comparison folder)."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    for p in PROTOCOLS.values():
        if p.folder == folder:
            return p
    raise ValueError(f"comparison output {path!r} is in no protocol's folder "
                     f"({', '.join(repr(p.folder) for p in PROTOCOLS.values())})")


def tested_splits() -> list[str]:
    """The splits the protocols test, in :data:`PROTOCOLS` order."""
    return [p.split for p in PROTOCOLS.values()]
