"""The test protocols, declared once: what each tests and how its comparison is shown.

A protocol is a split of test items, optionally narrowed by an item filter, and a question
about them. Two are built in:

* ``unseenunheard``: the ``test`` split, identities never seen in training;
* ``seenheard``: the ``seenheard`` split (:data:`facevoice.data.inputs.SEENHEARD`, held out by
  :func:`facevoice.data.inputs.heldout_videos`), videos of training identities never read in
  training.

A config declares more under ``evaluation.declare`` (:func:`declared`) and picks the ones a
run evaluates with ``evaluation.protocols`` (:func:`selected`). The workflow runs each one
through its own folders: ``trials/<name>/``, ``evaluation/<name>/``, ``comparison/<name>/``.

Each :class:`Protocol` names its title (every figure title and table heading of its
comparison carries it), the split it tests, its item filter (manifest column -> values kept),
which of the papers' reported figures belong to it (a figure's ``test_set`` in
``reference_results.yaml``, :data:`DEFAULT_TEST_SET` when it has none: no figure or table shows
another protocol's rows; a declared protocol shows none unless it names a ``test_set``) and its
strata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from facevoice.data.inputs import SEENHEARD
from facevoice.evaluation.protocol import MATCHING_STRATA, VERIFICATION_STRATA

#: The manifest columns an item filter may name.
FILTER_COLUMNS = ("gender", "nationality", "language")
NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Protocol:
    name: str  #: its key: its folders' name, the protocols table's column prefix
    title: str  #: for people, in every figure title and table heading
    split: str  #: the split of items it tests
    description: str  #: one line: what its items are
    test_set: str | None = None  #: the reported figures it shows (their ``test_set``); None: none
    filter: tuple[tuple[str, tuple[str, ...]], ...] = ()  #: (manifest column, values kept) pairs
    verification_strata: tuple[str, ...] = VERIFICATION_STRATA
    matching_strata: tuple[str, ...] = MATCHING_STRATA

    @property
    def heading(self) -> str:
        """Its title and description, as figure titles name it."""
        return f"{self.title} ({self.description})"

    @property
    def item_filter(self) -> dict[str, list[str]]:
        """Its item filter as a mapping: manifest column -> the values kept."""
        return {col: list(values) for col, values in self.filter}

    @property
    def pins_set(self) -> str | None:
        """The official Learnable PINs set of its trials (a built-in protocol on its whole split)."""
        return self.name if self.name in PROTOCOLS and not self.filter else None

    def owns(self, figure: dict) -> bool:
        """Whether a reported figure (an entry of a paper's ``figures``) was measured under
        this protocol (its ``test_set``); :func:`figure_test_set` checks the value."""
        return figure_test_set(figure) == self.test_set


UNSEEN_UNHEARD = Protocol(
    name="unseenunheard", title="Unseen-unheard", split="test",
    description="test identities never seen in training", test_set="unseenunheard")
SEEN_HEARD = Protocol(
    name="seenheard", title="Seen-heard", split=SEENHEARD,
    description="held-out videos of training identities, never read in training", test_set="seenheard")

#: The built-in test protocols by name, the unseen-unheard one first.
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
    """The built-in protocol that tests ``split`` (None for a split none tests, e.g. val)."""
    return next((p for p in PROTOCOLS.values() if p.split == split), None)


def _declare(entry: dict) -> Protocol:
    """One ``evaluation.declare`` entry (complete: the schema's defaults filled in) as a Protocol."""
    name = str(entry["name"])
    if not NAME.fullmatch(name):
        raise ValueError(f"evaluation.declare: protocol name {name!r} is also a folder name: use letters, "
                         "digits, '_' and '-' only")
    if name in PROTOCOLS:
        raise ValueError(f"evaluation.declare: {name!r} is a built-in protocol: give yours another name")
    test_set = entry.get("test_set")
    if test_set is not None and test_set not in PROTOCOLS:
        raise ValueError(f"evaluation.declare.{name}.test_set is {test_set!r}: use one of {', '.join(PROTOCOLS)} "
                         "(the reported figures it shows) or leave it out (none)")
    item_filter = entry.get("filter") or {}
    bad = sorted(set(item_filter) - set(FILTER_COLUMNS))
    if bad:
        raise ValueError(f"evaluation.declare.{name}.filter names {', '.join(bad)}: filter on "
                         f"{', '.join(FILTER_COLUMNS)} (manifest columns)")
    pairs = tuple((col, tuple(str(v) for v in (vals if isinstance(vals, list) else [vals])))
                  for col, vals in sorted(item_filter.items()))
    return Protocol(name=name, title=str(entry["title"]), split=str(entry["split"]),
                    description=str(entry["description"]), test_set=test_set, filter=pairs)


def declared(evaluation: dict) -> dict[str, Protocol]:
    """Every protocol a config knows: the built-ins, then its ``evaluation.declare`` entries
    (ValueError naming the entry for a clash or a bad value)."""
    out = dict(PROTOCOLS)
    for entry in evaluation.get("declare") or []:
        p = _declare(entry)
        if p.name in out:
            raise ValueError(f"evaluation.declare: protocol {p.name!r} is declared twice")
        out[p.name] = p
    return out


def selected(evaluation: dict) -> list[Protocol]:
    """The protocols ``evaluation.protocols`` names, in its order (ValueError for a name no
    protocol has, with the choices)."""
    known = declared(evaluation)
    missing = [n for n in evaluation["protocols"] if n not in known]
    if missing:
        raise ValueError(f"evaluation.protocols names {', '.join(map(repr, missing))}: no such protocol (known: "
                         f"{', '.join(known)}; declare new ones under evaluation.declare)")
    return [known[n] for n in dict.fromkeys(evaluation["protocols"])]


def resolve(name: str, evaluation: dict) -> Protocol:
    """The protocol called ``name``: a built-in or one of ``evaluation.declare``."""
    known = declared(evaluation)
    if name not in known:
        raise ValueError(f"no protocol {name!r} (known: {', '.join(known)}; declare new ones under "
                         "evaluation.declare)")
    return known[name]
