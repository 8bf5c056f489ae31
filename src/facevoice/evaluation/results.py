"""The results file of ``facevoice evaluate`` (one method on one split's trial lists): the
contract between the evaluation, which writes it, and the comparison tables, which read it.

Both go through this module: ``evaluate`` builds the entries with the classes below and
checks the whole document with :func:`validate` before writing it; ``compare`` reads it
with :func:`load`. A key that is missing, renamed or unknown, or a value of the wrong kind,
is refused with the key's dotted path and the file; it never becomes a "—" in a table.

Format :data:`RESULTS_FORMAT` (fractions in [0, 1], minDCF and min Cllr costs in [0, 1]; metric definitions in ``meta.definitions``
and :mod:`facevoice.evaluation.metrics`)::

    {"verification": {S: {"available", "reason", "auc", "eer", "min_dcf", "min_cllr", "eer_threshold",
                          "min_dcf_threshold", "n_trials", "n_positive", "n_negative", "n_identities",
                          "ci95": {"auc": [lo, hi], "eer": [lo, hi], "min_dcf": [lo, hi], "min_cllr": [lo, hi]},
                          "accuracy_at_threshold": {"threshold", "accuracy"}}},   # optional
     "matching": {D: {S: {"2": acc, ..., "10": acc, "available": {"2": bool, ...},
                          "n_trials": {"2": n, ...}, "ci95": {"2": [lo, hi], ...}, "reason"}}},
     "retrieval": {D: {"available", "reason", "map", "chance", "n_probes", "gallery_size",
                       "n_identities", "ci95": {"map": [lo, hi]}}},
     "meta": {"format", "method", "code_version", "embeddings", "scorer", "trials", "bootstrap",
              "dcf", "definitions"}}

``meta.trials.<kind>``: ``path``, ``split``, ``seed``, ``source``, ``manifest_sha256``,
``code_version``, ``strata``, and for imported official lists ``cross_gender_negatives``
(stratum -> the list's negatives whose identities' genders differ in the metadata).

What is there is what the trial lists held, and ``meta.trials`` says what they held: a
protocol's section exists exactly when ``meta.trials`` has its list, and its keys are exactly
the list's ``strata`` (a stratum S in verification, ``D/S/N`` in matching; retrieval always
has both directions D). A stratum or N the lists did not hold is therefore absent by
record, and :meth:`Results.verification_at` and friends return None for it.

Availability is explicit: ``available: false`` (per N in matching) with a ``reason`` marks a
figure that cannot exist on these lists (no age metadata for stratum A, fewer identities than
N on a small split); its figures are null, its counts 0 (``gallery_size`` is still the
gallery's) and its ``ci95`` null. Matching's ``reason`` names the unavailable N and is null
when every N is available. An available entry has every figure as a number; only a
threshold (an infinite one is written null) and an interval (null without a bootstrap,
``ci95`` itself null in verification and retrieval; or no finite replicate) may be null.
``accuracy_at_threshold`` is there only for a method with its own decision threshold.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from facevoice.common.io import strict
from facevoice.evaluation.protocol import DIRECTIONS, KINDS

RESULTS_FORMAT = "facevoice-results/3"
CI_KEY = "ci95"

Interval = tuple[float, float]


class ResultsError(ValueError):
    """A results document that breaks the format; the message names the file and the key."""


# --------------------------------------------------------------------------- reading


class _Reader:
    """Checks the values of one document; every failure names ``where`` and the key's path."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, problem: str) -> NoReturn:
        self.refuse(f"{key or 'the document'}: {problem}")

    def refuse(self, text: str) -> NoReturn:
        raise ResultsError(f"{self.where}: {text} (results format {RESULTS_FORMAT}, facevoice.evaluation.results)")

    def object(self, value: Any, key: str, required=(), optional=()) -> dict:
        """``value`` as a JSON object holding every ``required`` key and no key beyond them
        and ``optional`` (None: any other key)."""
        if not isinstance(value, dict):
            self.fail(key, f"should be an object, not {_show(value)}")
        missing = [k for k in required if k not in value]
        unknown = [] if optional is None else [k for k in value if k not in required and k not in optional]
        if missing or unknown:
            parts = ["missing key " + ", ".join(f"'{_join(key, k)}'" for k in missing)] if missing else []
            parts += ["unknown key " + ", ".join(f"'{_join(key, k)}'" for k in unknown)] if unknown else []
            self.refuse("; ".join(parts))
        return value

    def number(self, value: Any, key: str, nullable: bool = False) -> float | None:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"should be a number{' or null' if nullable else ''}, not {_show(value)}")
        return float(value)

    def count(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(key, f"should be a count (an integer >= 0), not {_show(value)}")
        return value

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"should be true or false, not {_show(value)}")
        return value

    def text(self, value: Any, key: str, nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            self.fail(key, f"should be a non-empty string{' or null' if nullable else ''}, not {_show(value)}")
        return value

    def interval(self, value: Any, key: str) -> Interval | None:
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 2:
            self.fail(key, f"should be [lo, hi] or null, not {_show(value)}")
        return (self.number(value[0], f"{key}[0]"), self.number(value[1], f"{key}[1]"))

    def strings(self, value: Any, key: str) -> list[str]:
        if not isinstance(value, list):
            self.fail(key, f"should be a list of strings, not {_show(value)}")
        return [self.text(v, f"{key}[{i}]") for i, v in enumerate(value)]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _availability(r: _Reader, key: str, available: bool, reason: str | None, figures: dict,
                  empty: dict) -> None:
    """An available entry has no reason and every figure; an unavailable one a reason, no
    figure, and each of ``empty`` null (an interval) or 0 (a count, ``n_*``)."""
    if available and reason is not None:
        r.fail(f"{key}.reason", "should be null: the entry is available")
    if not available and reason is None:
        r.fail(f"{key}.reason", "should say why the entry is unavailable")
    _figures(r, key, available, figures, empty)


def _figures(r: _Reader, key: str, available: bool, figures: dict, empty: dict) -> None:
    for name, value in figures.items():
        if available and value is None:
            r.fail(_join(key, name), "is null but the entry is available")
        if not available and value is not None:
            r.fail(_join(key, name), "should be null: the entry is unavailable")
    for name, value in empty.items():
        zero = 0 if name.startswith("n_") else None
        if not available and (value != zero or isinstance(value, bool)):
            r.fail(_join(key, name), f"should be {json.dumps(zero)}: the entry is unavailable")


def _intervals(r: _Reader, value: Any, key: str, names, nullable: bool = True) -> dict | None:
    if value is None and nullable:
        return None
    obj = r.object(value, key, required=names)
    return {k: r.interval(obj[k], _join(key, k)) for k in names}


def _interval_json(ci: dict | None) -> dict | None:
    return None if ci is None else {k: None if v is None else [v[0], v[1]] for k, v in ci.items()}


# --------------------------------------------------------------------------- entries


VERIFICATION_FIGURES = ("auc", "eer", "min_dcf", "min_cllr")
VERIFICATION_THRESHOLDS = ("eer_threshold", "min_dcf_threshold")
VERIFICATION_COUNTS = ("n_trials", "n_positive", "n_negative", "n_identities")


@dataclass(frozen=True)
class VerificationResult:
    """One verification stratum."""

    available: bool
    reason: str | None = None
    auc: float | None = None
    eer: float | None = None
    eer_threshold: float | None = None
    min_dcf: float | None = None
    min_dcf_threshold: float | None = None
    min_cllr: float | None = None
    n_trials: int = 0
    n_positive: int = 0
    n_negative: int = 0
    n_identities: int = 0
    ci95: dict[str, Interval | None] | None = None
    accuracy_at_threshold: dict[str, float] | None = None

    @classmethod
    def unavailable(cls, reason: str) -> VerificationResult:
        return cls(available=False, reason=reason)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("available", "reason") + VERIFICATION_FIGURES
               + VERIFICATION_THRESHOLDS + VERIFICATION_COUNTS}
        out[CI_KEY] = _interval_json(self.ci95)
        if self.accuracy_at_threshold is not None:
            out["accuracy_at_threshold"] = dict(self.accuracy_at_threshold)
        return out

    @classmethod
    def from_json(cls, r: _Reader, value: Any, key: str) -> VerificationResult:
        required = (("available", "reason", CI_KEY) + VERIFICATION_FIGURES + VERIFICATION_THRESHOLDS
                    + VERIFICATION_COUNTS)
        obj = r.object(value, key, required, optional=("accuracy_at_threshold",))
        available = r.flag(obj["available"], f"{key}.available")
        reason = r.text(obj["reason"], f"{key}.reason", nullable=True)
        figures = {k: r.number(obj[k], f"{key}.{k}", nullable=True) for k in VERIFICATION_FIGURES}
        counts = {k: r.count(obj[k], f"{key}.{k}") for k in VERIFICATION_COUNTS}
        _availability(r, key, available, reason, figures, {CI_KEY: obj[CI_KEY], **counts})
        acc = None
        if "accuracy_at_threshold" in obj:
            a = r.object(obj["accuracy_at_threshold"], f"{key}.accuracy_at_threshold", ("threshold", "accuracy"))
            acc = {k: r.number(a[k], f"{key}.accuracy_at_threshold.{k}") for k in ("threshold", "accuracy")}
        return cls(available, reason, **figures, **counts,
                   **{k: r.number(obj[k], f"{key}.{k}", nullable=True) for k in VERIFICATION_THRESHOLDS},
                   ci95=_intervals(r, obj[CI_KEY], f"{key}.{CI_KEY}", VERIFICATION_FIGURES),
                   accuracy_at_threshold=acc)


@dataclass(frozen=True)
class MatchingResult:
    """One matching stratum of one direction, for each N (the candidates per trial)."""

    accuracy: dict[int, float | None]
    available: dict[int, bool]
    n_trials: dict[int, int]
    ci95: dict[int, Interval | None]
    reason: str | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {str(n): a for n, a in self.accuracy.items()}
        out["available"] = {str(n): a for n, a in self.available.items()}
        out["n_trials"] = {str(n): c for n, c in self.n_trials.items()}
        out[CI_KEY] = _interval_json({str(n): c for n, c in self.ci95.items()})
        out["reason"] = self.reason
        return out

    @classmethod
    def from_json(cls, r: _Reader, value: Any, key: str) -> MatchingResult:
        fixed = ("available", "n_trials", CI_KEY, "reason")
        ns = list(r.object(r.object(value, key, fixed, optional=None)["available"], f"{key}.available",
                           optional=None))
        if not all(n.isdigit() for n in ns):
            r.fail(f"{key}.available", f"keys should be the N of the lists (digits), not {_show(ns)}")
        obj = r.object(value, key, fixed + tuple(ns))  # an accuracy for every N, and nothing else
        n_trials = r.object(obj["n_trials"], f"{key}.n_trials", ns)
        ci95 = r.object(obj[CI_KEY], f"{key}.{CI_KEY}", ns)
        out = cls({}, {}, {}, {}, r.text(obj["reason"], f"{key}.reason", nullable=True))
        for n in ns:
            ok = out.available[int(n)] = r.flag(obj["available"][n], f"{key}.available.{n}")
            out.accuracy[int(n)] = r.number(obj[n], f"{key}.{n}", nullable=True)
            out.n_trials[int(n)] = r.count(n_trials[n], f"{key}.n_trials.{n}")
            out.ci95[int(n)] = r.interval(ci95[n], f"{key}.{CI_KEY}.{n}")
            _figures(r, key, ok, {n: obj[n]}, {f"n_trials.{n}": n_trials[n], f"{CI_KEY}.{n}": ci95[n]})
        if (out.reason is None) != all(out.available.values()):
            r.fail(f"{key}.reason", "should be null exactly when every N is available")
        return out


RETRIEVAL_FIGURES = ("map", "chance")
RETRIEVAL_COUNTS = ("n_probes", "gallery_size", "n_identities")


@dataclass(frozen=True)
class RetrievalResult:
    """Retrieval in one direction."""

    available: bool
    reason: str | None = None
    map: float | None = None
    chance: float | None = None
    n_probes: int = 0
    gallery_size: int = 0
    n_identities: int = 0
    ci95: dict[str, Interval | None] | None = None

    @classmethod
    def unavailable(cls, reason: str, gallery_size: int = 0) -> RetrievalResult:
        return cls(available=False, reason=reason, gallery_size=gallery_size)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("available", "reason") + RETRIEVAL_FIGURES + RETRIEVAL_COUNTS}
        out[CI_KEY] = _interval_json(self.ci95)
        return out

    @classmethod
    def from_json(cls, r: _Reader, value: Any, key: str) -> RetrievalResult:
        obj = r.object(value, key, ("available", "reason", CI_KEY) + RETRIEVAL_FIGURES + RETRIEVAL_COUNTS)
        available = r.flag(obj["available"], f"{key}.available")
        reason = r.text(obj["reason"], f"{key}.reason", nullable=True)
        figures = {k: r.number(obj[k], f"{key}.{k}", nullable=True) for k in RETRIEVAL_FIGURES}
        counts = {k: r.count(obj[k], f"{key}.{k}") for k in RETRIEVAL_COUNTS}
        _availability(r, key, available, reason, figures,
                      {CI_KEY: obj[CI_KEY], "n_probes": counts["n_probes"], "n_identities": counts["n_identities"]})
        return cls(available, reason, **figures, **counts,
                   ci95=_intervals(r, obj[CI_KEY], f"{key}.{CI_KEY}", ("map",)))


# --------------------------------------------------------------------------- meta and document


META_KEYS = ("format", "method", "code_version", "embeddings", "scorer", "trials", "bootstrap", "dcf",
             "definitions")
TRIALS_KEYS = ("path", "split", "seed", "source", "manifest_sha256", "code_version", "strata")
#: imported official lists only: stratum -> negatives whose identities' genders differ
TRIALS_OPTIONAL = ("cross_gender_negatives",)
DCF_KEYS = ("p_target", "c_miss", "c_fa")


@dataclass(frozen=True)
class Meta:
    """Where the results come from; ``trials``: kind -> that list's file, split, seed, ..., and
    ``strata`` (the keys of its section)."""

    method: str
    scorer: str
    trials: dict[str, dict]
    dcf: dict[str, float]
    bootstrap: dict
    code_version: dict
    embeddings: dict
    definitions: dict
    format: str = RESULTS_FORMAT

    @classmethod
    def from_json(cls, r: _Reader, value: Any) -> Meta:
        if not isinstance(value, dict):
            r.fail("meta", f"should be an object, not {_show(value)}")
        if value.get("format") != RESULTS_FORMAT:
            r.fail("meta.format", f"is {_show(value.get('format'))}, this version reads {RESULTS_FORMAT!r}: "
                   "evaluate the method again (facevoice evaluate, or the workflow's evaluate job)")
        obj = r.object(value, "meta", META_KEYS)
        trials = r.object(obj["trials"], "meta.trials", optional=KINDS)
        for kind, entry in trials.items():
            r.object(entry, f"meta.trials.{kind}", TRIALS_KEYS, TRIALS_OPTIONAL)
            r.strings(entry["strata"], f"meta.trials.{kind}.strata")
        dcf = r.object(obj["dcf"], "meta.dcf", DCF_KEYS)
        return cls(method=r.text(obj["method"], "meta.method"), scorer=r.text(obj["scorer"], "meta.scorer"),
                   trials=trials, dcf={k: r.number(dcf[k], f"meta.dcf.{k}") for k in DCF_KEYS},
                   **{k: r.object(obj[k], f"meta.{k}", optional=None)
                      for k in ("bootstrap", "code_version", "embeddings", "definitions")})

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in META_KEYS}

    def strata(self, kind: str) -> list[str] | None:
        """The strata of ``kind``'s trial list (None: no such list was scored)."""
        return self.trials[kind]["strata"] if kind in self.trials else None


@dataclass(frozen=True)
class Results:
    """One results document, checked; ``path`` is the file it was read from, if any."""

    meta: Meta
    verification: dict[str, VerificationResult] | None = None
    matching: dict[str, dict[str, MatchingResult]] | None = None
    retrieval: dict[str, RetrievalResult] | None = None
    path: str | None = None

    @property
    def name(self) -> str:
        return self.meta.method

    def verification_at(self, stratum: str) -> VerificationResult | None:
        """The stratum's result; None when the trial lists held no such stratum."""
        return (self.verification or {}).get(stratum)

    def matching_at(self, direction: str, stratum: str) -> MatchingResult | None:
        """The stratum's result in ``direction``; None when the trial lists held no such stratum."""
        return ((self.matching or {}).get(direction) or {}).get(stratum)

    def retrieval_at(self, direction: str) -> RetrievalResult | None:
        """The direction's result; None when the trial folder had no retrieval list."""
        return (self.retrieval or {}).get(direction)

    def to_json(self) -> dict:
        sections = {"verification": self.verification, "matching": self.matching, "retrieval": self.retrieval}
        return {**sections_json(sections), "meta": self.meta.to_json()}


def sections_json(sections: dict) -> dict:
    """The protocols' sections (``verification``, ``matching``, ``retrieval``; None or absent:
    no such list) as JSON objects."""
    out: dict[str, Any] = {}
    if sections.get("verification") is not None:
        out["verification"] = {s: e.to_json() for s, e in sections["verification"].items()}
    if sections.get("matching") is not None:
        out["matching"] = {d: {s: e.to_json() for s, e in by_s.items()} for d, by_s in sections["matching"].items()}
    if sections.get("retrieval") is not None:
        out["retrieval"] = {d: e.to_json() for d, e in sections["retrieval"].items()}
    return out


def _matching_section(r: _Reader, value: Any, strata: list[str]) -> dict[str, dict[str, MatchingResult]]:
    """The matching section, whose directions, strata and N are those of ``strata`` ("D/S/N")."""
    want: dict[str, dict[str, list[str]]] = {d: {} for d in DIRECTIONS}
    for k in strata:
        parts = k.split("/")
        if len(parts) != 3 or not parts[2].isdigit():
            r.fail("meta.trials.matching.strata", f"{k!r} is not direction/stratum/N")
        want.setdefault(parts[0], {}).setdefault(parts[1], []).append(parts[2])
    section = r.object(value, "matching", list(want))
    out: dict[str, dict[str, MatchingResult]] = {}
    for d in section:
        by_s = r.object(section[d], f"matching.{d}", list(want[d]))
        out[d] = {}
        for s in by_s:
            key = f"matching.{d}.{s}"
            entry = r.object(by_s[s], key, ["available"] + want[d][s], optional=None)  # every N of the lists
            r.object(entry["available"], f"{key}.available", want[d][s])
            out[d][s] = MatchingResult.from_json(r, entry, key)
    return out


def parse(doc: Any, where: str = "results") -> Results:
    """A results document (parsed JSON) as :class:`Results`; :class:`ResultsError` naming
    ``where`` and the key when it breaks the format."""
    r = _Reader(str(where))
    top = r.object(doc, "", ("meta",), optional=KINDS)
    meta = Meta.from_json(r, top["meta"])
    for kind in KINDS:
        if (kind in top) != (kind in meta.trials):
            r.fail(kind, "missing, though meta.trials names its list" if kind in meta.trials
                   else "present, though meta.trials names no such list")
    verification = matching = retrieval = None
    if "verification" in top:
        section = r.object(top["verification"], "verification", meta.strata("verification"))
        verification = {s: VerificationResult.from_json(r, e, f"verification.{s}") for s, e in section.items()}
    if "matching" in top:
        matching = _matching_section(r, top["matching"], meta.strata("matching"))
    if "retrieval" in top:
        section = r.object(top["retrieval"], "retrieval", DIRECTIONS)
        retrieval = {d: RetrievalResult.from_json(r, e, f"retrieval.{d}") for d, e in section.items()}
    return Results(meta, verification, matching, retrieval, path=str(where))


def validate(doc: dict, where: str = "results") -> Results:
    """Check ``doc`` as it will be written (strict JSON: non-finite floats as null) before
    writing it; return it parsed."""
    return parse(json.loads(json.dumps(strict(doc), default=str, allow_nan=False)), where)


def load(path: str | os.PathLike) -> Results:
    """Read and check one results file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ResultsError(f"{path}: not a JSON document ({exc})") from None
    return parse(doc, str(path))
