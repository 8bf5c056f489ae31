"""Evaluation trial lists: generated from the manifest with a fixed seed, or imported.

``facevoice trials --manifest M --split test --out DIR --seed N [--config config.yaml]``
writes three Parquet files (plus a readable ``summary.json``) into DIR, using only the
manifest rows of the requested split. The workflow runs it once per test protocol
(``--protocol``: a built-in one of :mod:`facevoice.evaluation.protocols`, unseen-unheard or
seen-heard, or a declared one); ``val`` lists are made on request (the trainer selects models
on its own subset of the validation identities).
``--import-pins PINDIR --pins-set SET`` (a built-in protocol's name) takes the verification trials
from the official Learnable PINs lists instead (matching and retrieval are still generated).
``--language L`` (the MAV-Celeb layout, the FAME protocol) keeps only the split's items in
language L (the manifest's ``language`` column): every list is drawn within the split's
identities that have faces and voices in L, and the metadata records ``language``.
``--protocol NAME`` draws a protocol's lists (:mod:`facevoice.evaluation.protocols`: a built-in
or one of ``evaluation.declare`` in --config/--params): its split, and only the items its filter
keeps (manifest column -> values, e.g. ``gender: f``); the metadata records ``protocol`` and
``filter``.

Files
-----
``verification.parquet`` (one row per trial)
    ``stratum``        U | G | N | A | GNA
    ``trial``          int32, 0.. within the stratum
    ``label``          int8: 1 same person, 0 different people
    ``face``, ``voice``                  manifest items
    ``face_identity``, ``voice_identity``
    Half the trials of a stratum are positive. A positive draws an identity uniformly
    from the stratum's eligible identities, then one face and one voice item of it
    uniformly (any video, as the Learnable PINs lists do). A negative draws the face's
    identity uniformly and the voice's identity uniformly among the *other* eligible
    identities sharing the stratum's attributes: nothing (U), gender (G), nationality (N),
    age band (A), all three (GNA). Eligible: the identity has at least one face and one
    voice item, the stratum's attributes are known, and another identity shares them.
    Duplicate trials are not drawn; when the split has fewer distinct pairs than
    requested, the stratum is smaller (``strata`` metadata gives requested and actual).

``matching.parquet`` (one row per trial)
    ``direction``      F-V (face probe, voice candidates) | V-F
    ``stratum``        U | G | N | GN
    ``n_candidates``   N (2..n_max for U; 2 for the other strata by default)
    ``trial``          int32, 0.. within (direction, stratum, N)
    ``probe``, ``probe_identity``
    ``candidates``, ``candidate_identities``  list<string> of length N
    ``target``         int8 index of the true candidate in ``candidates`` (uniform)
    The probe's identity is drawn uniformly from the eligible identities; the true
    candidate is one of its items of the other modality; the N - 1 impostors are
    distinct identities drawn uniformly from the other identities sharing the stratum's
    attributes with the probe, one item each.

``retrieval.parquet`` (one row per item of the split)
    ``item``, ``identity``, ``modality``
    ``probe``          bool: the item is a query (its identity has at least one item of
                       the other modality, and it was kept by ``max_probes``)
    F-V queries every face probe against all voice items; V-F the reverse.

Metadata (``facevoice.common.io.read_parquet_meta``) of every file
    ``format`` ("facevoice-trials/1"), ``kind``, ``split``, ``seed``, ``source``
    ("generated" or "learnable-pins"), ``code_version`` ({"facevoice": version, "git":
    ``git describe --always --dirty`` or "unknown"}), ``numpy_version``, ``manifest``
    ({"path", "sha256", "rows", "identities", "hash_columns"}), ``params`` (sizes, age
    cut points), and ``strata``: for each stratum (verification), or each
    "direction/stratum/N" (matching), or direction (retrieval):
    {"available": bool, "reason": str | null (why it is unavailable), "note": str | null
    (say, fewer distinct trials than requested), "n_trials", "n_requested",
    "n_identities", "excluded_missing_metadata"}.
    A stratum the metadata cannot support (no age anywhere, say) is written with
    ``available: false``, zero rows and the reason; nothing is ever filled in.

The manifest hash is the sha256 of the split's rows sorted by ``item``, each written as
a compact JSON array of ``hash_columns`` (null for missing values), joined by newlines.

Randomness: every list (stratum, direction, N) has its own generator,
``numpy.random.default_rng(SeedSequence(seed, spawn_key=(crc32(name),)))``, so changing
one list's size never changes another; identities and items are sorted first, so the
manifest's row order does not matter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from facevoice.common.config import check_section
from facevoice.common.version import code_version
from facevoice.data.inputs import PINS_FILES, PINS_SETS, pins_face_path, pins_file, pins_voice_path
from facevoice.data.manifest import read_manifest
from facevoice.evaluation.protocol import (  # noqa: F401
    DIRECTIONS,
    FORMAT,
    MATCHING_SCHEMA,
    RETRIEVAL_SCHEMA,
    VERIFICATION_SCHEMA,
    VERIFICATION_STRATA,
    load_config,
    write_trials,
)
from facevoice.evaluation.protocols import PROTOCOLS, SEEN_HEARD, UNSEEN_UNHEARD, Protocol, resolve

STRATUM_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "U": (),
    "G": ("gender",),
    "N": ("nationality",),
    "A": ("age_band",),
    "GN": ("gender", "nationality"),
    "GNA": ("gender", "nationality", "age_band"),
}
HASH_COLUMNS = ("item", "clip", "identity", "name", "split", "modality", "gender",
                "nationality", "age")


# --------------------------------------------------------------------------- helpers


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(name.encode()),)))


def _none(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def manifest_sha256(rows: pd.DataFrame) -> tuple[str, list[str]]:
    """sha256 of the rows (sorted by item) over the hash columns present; (hex, columns)."""
    cols = [c for c in HASH_COLUMNS if c in rows.columns]
    df = rows.sort_values("item", kind="stable")
    h = hashlib.sha256()
    values = [df[c].astype(object).tolist() for c in cols]
    for i, row in enumerate(zip(*values)):
        if i:
            h.update(b"\n")
        h.update(json.dumps([_none(v) for v in row], separators=(",", ":"),
                            ensure_ascii=False).encode())
    return h.hexdigest(), cols


# --------------------------------------------------------------------------- the pool


class _Pool:
    """Identities of one split (sorted), their attributes and their items per modality."""

    def __init__(self, rows: pd.DataFrame, age_cuts: list[float]):
        self.rows = rows
        bad = set(rows["modality"].unique()) - {"face", "voice"}
        if bad:
            raise ValueError(f"unknown modality values {sorted(bad)}")
        if rows["item"].duplicated().any():
            dup = rows.loc[rows["item"].duplicated(), "item"].iloc[0]
            raise ValueError(f"manifest item {dup!r} appears twice")
        self.identities = np.array(sorted(rows["identity"].astype(str).unique()), dtype=object)
        self.index = {k: i for i, k in enumerate(self.identities)}
        n = len(self.identities)
        self.items: dict[str, np.ndarray] = {}
        self.start: dict[str, np.ndarray] = {}
        self.count: dict[str, np.ndarray] = {}
        for mod in ("face", "voice"):
            sub = rows[rows["modality"] == mod].sort_values(["identity", "item"], kind="stable")
            self.items[mod] = sub["item"].to_numpy(dtype=object)
            codes = np.array([self.index[str(x)] for x in sub["identity"]], dtype=np.int64)
            cnt = np.bincount(codes, minlength=n).astype(np.int64)
            self.count[mod] = cnt
            self.start[mod] = np.concatenate([[0], np.cumsum(cnt)[:-1]]).astype(np.int64)
        self.attrs = self._attributes(rows, age_cuts)

    def _attributes(self, rows: pd.DataFrame, age_cuts: list[float]) -> dict[str, list]:
        out: dict[str, list] = {}
        for col in ("gender", "nationality"):
            vals: list = [None] * len(self.identities)
            if col in rows.columns:
                for ident, grp in rows.groupby("identity", sort=True):
                    u = {_none(v) for v in grp[col].tolist()} - {None}
                    if len(u) > 1:
                        raise ValueError(f"identity {ident!r} has several {col} values: {sorted(map(str, u))}")
                    vals[self.index[str(ident)]] = (str(u.pop()) if u else None)
            out[col] = vals
        bands: list = [None] * len(self.identities)
        if "age" in rows.columns:
            ages = pd.to_numeric(rows["age"], errors="coerce")
            med = ages.groupby(rows["identity"].astype(str)).median()
            for ident, a in med.items():
                if pd.notna(a):
                    bands[self.index[ident]] = int(np.digitize(float(a), np.asarray(age_cuts, float)))
        out["age_band"] = bands
        return out

    def both(self) -> np.ndarray:
        return (self.count["face"] > 0) & (self.count["voice"] > 0)

    def pick(self, modality: str, ident: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniformly drawn item index (into self.items[modality]) per identity."""
        cnt = self.count[modality][ident]
        return self.start[modality][ident] + rng.integers(0, cnt)

    def groups(self, stratum: str, min_size: int) -> tuple[list[np.ndarray], str | None, int]:
        """Eligible groups (sorted member arrays) of identities sharing the stratum's attributes.

        Returns (groups, reason when none qualifies, identities excluded for a missing
        attribute).
        """
        attrs = STRATUM_ATTRIBUTES[stratum]
        both = self.both()
        if not both.any():
            return [], "the split has no identity with both a face and a voice item", 0
        n = int(both.sum())
        if n < min_size:
            return [], (f"the split has {n} identit{'y' if n == 1 else 'ies'} with both a face and a voice "
                        f"item; this needs {min_size}"), 0
        keys: dict[tuple, list[int]] = {}
        missing = 0
        for i in np.flatnonzero(both):
            key = tuple(self.attrs[a][i] for a in attrs)
            if any(k is None for k in key):
                missing += 1
                continue
            keys.setdefault(key, []).append(int(i))
        names = {"gender": "gender", "nationality": "nationality", "age_band": "age"}
        if not keys:
            absent = [names[a] for a in attrs
                      if all(self.attrs[a][i] is None for i in np.flatnonzero(both))]
            return [], (f"no {' or '.join(absent)} metadata: the manifest's "
                        f"{'/'.join(absent)} column is null for every identity of the split"), missing
        groups = [np.array(v, dtype=np.int64) for k, v in sorted(keys.items(), key=lambda kv: repr(kv[0]))
                  if len(v) >= min_size]
        if not groups:
            what = " and ".join(names[a] for a in attrs) or "anything"
            biggest = max(len(v) for v in keys.values())
            return [], (f"no {min_size} identities of the split share {what} "
                        f"(largest group: {biggest})"), missing
        return groups, None, missing


def _draw_unique(draw: Callable[[int], np.ndarray], need: int,
                 key: Callable[[np.ndarray], np.ndarray], max_rounds: int = 64) -> np.ndarray:
    """Rows from ``draw`` without duplicate keys (first occurrences, in order), up to ``need``."""
    if need <= 0:
        return draw(0)
    chunks: list[np.ndarray] = []
    best = 0
    stall = 0
    first = np.zeros(0, dtype=np.int64)
    allrows = draw(0)
    for _ in range(max_rounds):
        chunks.append(draw(max(need - best, 0) + need // 4 + 16))
        allrows = np.vstack(chunks)
        _, first = np.unique(key(allrows), axis=0, return_index=True)
        first = np.sort(first)
        if len(first) >= need:
            return allrows[first[:need]]
        stall = stall + 1 if len(first) == best else 0
        best = len(first)
        if stall >= 3:
            break
    return allrows[first]


def _others(rng: np.random.Generator, groups: list[np.ndarray], owner: np.ndarray,
            probe: np.ndarray, k: int) -> np.ndarray:
    """For each probe identity, k distinct other members of its group, uniformly."""
    out = np.empty((len(probe), k), dtype=np.int64)
    for g, members in enumerate(groups):
        rows = np.flatnonzero(owner == g)
        if rows.size == 0:
            continue
        pos = np.searchsorted(members, probe[rows])
        r = rng.random((rows.size, members.size))
        r[np.arange(rows.size), pos] = 2.0  # never choose the probe itself
        out[rows] = members[np.argsort(r, axis=1)[:, :k]]
    return out


def _status(available: bool, reason: str | None, n: int, requested: int, n_ids: int,
            excluded: int = 0, note: str | None = None) -> dict:
    """A list's status: ``reason`` says why it is unavailable, ``note`` anything else."""
    return {"available": bool(available), "reason": None if available else reason,
            "note": note, "n_trials": int(n), "n_requested": int(requested),
            "n_identities": int(n_ids), "excluded_missing_metadata": int(excluded)}


# --------------------------------------------------------------------------- generation


def _verification(pool: _Pool, seed: int, n_trials: int, strata: list[str]) -> tuple[pd.DataFrame, dict]:
    frames, status = [], {}
    half = n_trials // 2
    for stratum in strata:
        groups, reason, excluded = pool.groups(stratum, 2)
        if reason:
            status[stratum] = _status(False, reason, 0, 2 * half, 0, excluded)
            continue
        rng = _rng(seed, f"verification/{stratum}")
        members = np.concatenate(groups)
        owner_of = np.full(len(pool.identities), -1)
        for g, m in enumerate(groups):
            owner_of[m] = g
        members.sort()

        def draw_pos(m: int) -> np.ndarray:
            a = members[rng.integers(0, len(members), size=m)]
            return np.stack([pool.pick("face", a, rng), pool.pick("voice", a, rng)], axis=1)

        def draw_neg(m: int) -> np.ndarray:
            a = members[rng.integers(0, len(members), size=m)]
            b = _others(rng, groups, owner_of[a], a, 1)[:, 0]
            return np.stack([pool.pick("face", a, rng), pool.pick("voice", b, rng)], axis=1)

        pos = _draw_unique(draw_pos, half, lambda x: x)
        neg = _draw_unique(draw_neg, half, lambda x: x)
        n_each = min(len(pos), len(neg))
        pairs = np.vstack([pos[:n_each], neg[:n_each]])
        labels = np.r_[np.ones(n_each, np.int8), np.zeros(n_each, np.int8)]
        perm = rng.permutation(len(labels))
        pairs, labels = pairs[perm], labels[perm]
        face = pool.items["face"][pairs[:, 0]]
        voice = pool.items["voice"][pairs[:, 1]]
        frames.append(pd.DataFrame({
            "stratum": stratum, "trial": np.arange(len(labels), dtype=np.int32), "label": labels,
            "face": face, "voice": voice,
            "face_identity": _identity_of(pool, "face", pairs[:, 0]),
            "voice_identity": _identity_of(pool, "voice", pairs[:, 1]),
        }))
        note = None if n_each == half else f"only {n_each} distinct trials of each label exist"
        status[stratum] = _status(True, None, 2 * n_each, 2 * half, len(members), excluded, note)
    return _concat(frames, VERIFICATION_SCHEMA), status


def _identity_index(pool: _Pool, modality: str, idx: np.ndarray) -> np.ndarray:
    """Identity index of each item index (items are grouped by identity, in order)."""
    return np.searchsorted(np.cumsum(pool.count[modality]), idx, side="right")


def _identity_of(pool: _Pool, modality: str, idx: np.ndarray) -> np.ndarray:
    return pool.identities[_identity_index(pool, modality, idx)]


def _matching(pool: _Pool, seed: int, n_trials: int, n_max: int, strata: list[str]
              ) -> tuple[pd.DataFrame, dict]:
    frames, status = [], {}
    combos = [(s, n) for s in strata for n in (range(2, n_max + 1) if s == "U" else [2])]
    for direction in DIRECTIONS:
        pmod, cmod = ("face", "voice") if direction == "F-V" else ("voice", "face")
        for stratum, n in combos:
            name = f"{direction}/{stratum}/{n}"
            groups, reason, excluded = pool.groups(stratum, n)
            if reason:
                status[name] = _status(False, reason, 0, n_trials, 0, excluded)
                continue
            rng = _rng(seed, f"matching/{name}")
            members = np.sort(np.concatenate(groups))
            owner_of = np.full(len(pool.identities), -1)
            for g, m in enumerate(groups):
                owner_of[m] = g

            def draw(m: int, n=n, members=members, owner_of=owner_of, groups=groups) -> np.ndarray:
                a = members[rng.integers(0, len(members), size=m)]
                probe = pool.pick(pmod, a, rng)
                true = pool.pick(cmod, a, rng)
                imp_ids = _others(rng, groups, owner_of[a], a, n - 1)
                imp = pool.pick(cmod, imp_ids.ravel(), rng).reshape(m, n - 1)
                target = rng.integers(0, n, size=m)
                cand = np.empty((m, n), dtype=np.int64)
                for j in range(n):  # insert the true candidate at its position
                    src = np.where(j < target, j, j - 1)
                    cand[:, j] = np.where(j == target, true, imp[np.arange(m), np.clip(src, 0, n - 2)])
                return np.column_stack([probe, cand, target])

            def key(x: np.ndarray, n=n) -> np.ndarray:
                return np.column_stack([x[:, :1], np.sort(x[:, 1:n + 1], axis=1)])

            rows = _draw_unique(draw, n_trials, key)
            probe_items = pool.items[pmod][rows[:, 0]]
            cand_idx = rows[:, 1:n + 1]
            cands = pool.items[cmod][cand_idx]
            cand_ids = _identity_of(pool, cmod, cand_idx.ravel()).reshape(cand_idx.shape)
            frames.append(pd.DataFrame({
                "direction": direction, "stratum": stratum,
                "n_candidates": np.full(len(rows), n, np.int8),
                "trial": np.arange(len(rows), dtype=np.int32),
                "probe": probe_items, "probe_identity": _identity_of(pool, pmod, rows[:, 0]),
                "candidates": [list(c) for c in cands],
                "candidate_identities": [list(c) for c in cand_ids],
                "target": rows[:, n + 1].astype(np.int8),
            }))
            note = None if len(rows) == n_trials else f"only {len(rows)} distinct trials exist"
            status[name] = _status(True, None, len(rows), n_trials, len(members), excluded, note)
    return _concat(frames, MATCHING_SCHEMA), status


def _retrieval(pool: _Pool, seed: int, max_probes: int | None) -> tuple[pd.DataFrame, dict]:
    frames, status = [], {}
    for direction in DIRECTIONS:
        pmod, cmod = ("face", "voice") if direction == "F-V" else ("voice", "face")
        codes = _identity_index(pool, pmod, np.arange(len(pool.items[pmod])))
        ident = pool.identities[codes]
        probe = pool.count[cmod][codes] > 0
        eligible = int(probe.sum())
        if max_probes is not None and eligible > max_probes:
            rng = _rng(seed, f"retrieval/{direction}")
            keep = rng.choice(np.flatnonzero(probe), size=int(max_probes), replace=False)
            probe[:] = False
            probe[keep] = True
        frames.append(pd.DataFrame({"item": pool.items[pmod], "identity": ident,
                                    "modality": pmod, "probe": probe}))
        n_probes = int(probe.sum())
        if n_probes == 0:
            status[direction] = _status(False, f"no {pmod} item has an identity with {cmod} items",
                                        0, eligible, 0)
        else:
            status[direction] = _status(True, None, n_probes, eligible,
                                        len(set(ident[probe])))
            status[direction]["gallery_size"] = int(len(pool.items[cmod]))
    return _concat(frames, RETRIEVAL_SCHEMA), status


def _concat(frames: list[pd.DataFrame], schema: pa.Schema) -> pd.DataFrame:
    if not frames:
        return schema.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest rows of ``split``, checked against the other splits.

    A test or validation split shares no identity with another split (unseen-unheard). The
    seen-heard split holds videos of training identities: it shares no identity with any
    other split but train, and no video with train.
    """
    rows = manifest[manifest["split"] == split].copy()
    rows["identity"] = rows["identity"].astype(str)
    others = manifest[manifest["split"] != split]
    if split == SEEN_HEARD.split:
        train = others[others["split"] == "train"]
        videos = lambda df: set(df["clip"].astype(str).str.rsplit("/", n=1).str[0])  # noqa: E731
        shared = sorted(videos(rows) & videos(train))
        if shared:
            raise ValueError(f"videos of the seen-heard split are also training videos: {shared[:5]}")
        others = others[others["split"] != "train"]
    leak = sorted(set(rows["identity"]) & set(others["identity"].astype(str)))
    if leak:
        raise ValueError(f"identities of split {split!r} also appear in other splits "
                         f"(unseen-unheard needs disjoint identities): {leak[:5]}")
    return rows


def language_rows(rows: pd.DataFrame, language: str) -> pd.DataFrame:
    """The rows of ``rows`` in ``language``; ValueError naming the languages there are when none is."""
    have = sorted(rows["language"].dropna().astype(str).unique()) if "language" in rows.columns else []
    if language not in have:
        raise ValueError(f"no item in language {language!r} in the manifest's rows of this split (languages: "
                         f"{have or 'none: the manifest has no language, only the mavceleb layout gives one'})")
    return rows[rows["language"] == language]


def filter_rows(rows: pd.DataFrame, item_filter: dict[str, list[str]]) -> pd.DataFrame:
    """The rows of ``rows`` whose every named column holds one of its values (a protocol's item
    filter); ValueError naming the column and the values there are when no row is kept."""
    for column, values in item_filter.items():
        if column not in rows.columns:
            raise ValueError(f"the protocol's filter names column {column!r}, which the manifest lacks")
        kept = rows[rows[column].astype(str).isin([str(v) for v in values])]
        if kept.empty:
            have = sorted(rows[column].dropna().astype(str).unique())
            raise ValueError(f"no item of this split has {column} in {list(values)} (the protocol's filter); "
                             f"its {column} values: {have or 'none'}")
        rows = kept
    return rows


def generate(manifest: pd.DataFrame, split: str, seed: int, config: dict,
             manifest_path: str | None = None, language: str | None = None,
             protocol: Protocol | None = None) -> dict[str, tuple[pd.DataFrame, dict]]:
    """All three lists for ``split``: {kind: (DataFrame, metadata)}; only the items in
    ``language`` when given (:func:`language_rows`), only those ``protocol``'s filter keeps
    when given (:func:`filter_rows`; ``split`` is then the protocol's).

    ``config`` is the complete ``evaluation:`` section (:func:`load_config`;
    ``facevoice.common.config.section("evaluation", {...})`` completes a partial one).
    """
    cfg = check_section("evaluation", config)
    rows = split_rows(manifest, split)
    if language is not None:
        rows = language_rows(rows, language)
    if protocol is not None:
        rows = filter_rows(rows, protocol.item_filter)
    pool = _Pool(rows, cfg["age_cuts"])
    params = {"verification": cfg["verification"], "matching": cfg["matching"],
              "retrieval": {"max_probes": cfg["retrieval"]["max_probes"]}, "age_cuts": cfg["age_cuts"]}
    base = _base_meta(rows, split, seed, params, manifest_path, pool)
    if language is not None:
        base["language"] = language
    if protocol is not None:
        base.update(protocol=protocol.name, filter=protocol.item_filter)
    v, vs = _verification(pool, seed, int(cfg["verification"]["n_trials"]),
                          list(cfg["verification"]["strata"]))
    m, ms = _matching(pool, seed, int(cfg["matching"]["n_trials"]), int(cfg["matching"]["n_max"]),
                      list(cfg["matching"]["strata"]))
    r, rs = _retrieval(pool, seed, cfg["retrieval"]["max_probes"])
    return {
        "verification": (v, {**base, "kind": "verification", "source": "generated", "strata": vs}),
        "matching": (m, {**base, "kind": "matching", "source": "generated", "strata": ms}),
        "retrieval": (r, {**base, "kind": "retrieval", "source": "generated", "strata": rs}),
    }


def _base_meta(rows: pd.DataFrame, split: str, seed: int, params: dict, manifest_path: str | None,
               pool: _Pool) -> dict:
    sha, cols = manifest_sha256(rows)
    return {
        "format": FORMAT, "split": split, "seed": int(seed),
        "code_version": code_version(), "numpy_version": np.__version__,
        "manifest": {"path": manifest_path, "sha256": sha, "rows": int(len(rows)),
                     "identities": int(len(pool.identities)), "hash_columns": cols},
        "params": params,
    }


# --------------------------------------------------------------------------- Learnable PINs


def _clip_key(clip: str) -> str:
    return str(int(clip)) if clip.isdigit() else clip


def _pins_index(rows: pd.DataFrame) -> tuple[dict[str, str], dict[tuple[str, str, str], str],
                                            dict[tuple[str, str], list[str]]]:
    """What a Learnable PINs path resolves against: name -> identity, (identity, video, clip
    key) -> voice item, (identity, video) -> its face items in item order."""
    name_to_id: dict[str, str] = {}
    for name, ident in rows[["name", "identity"]].drop_duplicates().itertuples(index=False):
        if _none(name) is not None:
            name_to_id[str(name)] = str(ident)
    voices: dict[tuple[str, str, str], str] = {}
    faces: dict[tuple[str, str], list[str]] = {}
    for item, clip, ident, mod in rows[["item", "clip", "identity", "modality"]].itertuples(index=False):
        parts = str(clip).split("/")
        video, c = parts[-2], parts[-1]
        if mod == "voice":
            voices[(str(ident), video, _clip_key(c))] = str(item)
        else:
            faces.setdefault((str(ident), video), []).append(str(item))
    for v in faces.values():
        v.sort()
    return name_to_id, voices, faces


def _resolve_pins_rows(src: pd.DataFrame, index: tuple) -> tuple[list[tuple], dict[str, int]]:
    """The rows of one list as (label, face item, voice item, face identity, voice identity),
    and the count of rows dropped per reason."""
    name_to_id, voices, faces = index
    dropped: dict[str, int] = {}
    out = []
    for label, vpath, fpath in zip(src["label"].astype(int), src["voice-path"], src["face-path"]):
        vname, vvideo, vclip = pins_voice_path(vpath)
        face_name, fvideo = pins_face_path(fpath)
        vident, fident = name_to_id.get(vname), name_to_id.get(face_name)
        if vident is None or fident is None:
            dropped["name not in split"] = dropped.get("name not in split", 0) + 1
            continue
        voice = voices.get((vident, vvideo, _clip_key(vclip)))
        if voice is None:
            dropped["voice clip not in manifest"] = dropped.get("voice clip not in manifest", 0) + 1
            continue
        cands = faces.get((fident, fvideo))
        if not cands:
            dropped["face video not in manifest"] = dropped.get("face video not in manifest", 0) + 1
            continue
        pick = int(hashlib.sha256(fpath.strip().encode()).hexdigest()[:16], 16) % len(cands)
        if label != int(vident == fident):
            dropped["label contradicts identities"] = dropped.get("label contradicts identities", 0) + 1
            continue
        out.append((label, cands[pick], voice, fident, vident))
    return out, dropped


def _import_pins_list(pins_dir: str | os.PathLike, stratum: str, pins_set: str, split: str,
                      index: tuple, genders: dict[str, str | None]) -> tuple[pd.DataFrame, dict, dict]:
    """One stratum's list: its trials, its status and its file entry of the metadata (with the
    count of its negatives whose identities' ``genders`` differ)."""
    fname = pins_file(PINS_FILES[stratum], pins_set)
    path = Path(pins_dir) / fname
    if not path.exists():
        raise ValueError(f"{fname} not found in {pins_dir} (evaluation.pins.dir): the {pins_set} lists "
                         f"of stratum {stratum} are needed, or leave {stratum} out of verification.strata")
    raw = path.read_bytes()
    file = {"file": fname, "sha256": hashlib.sha256(raw).hexdigest()}
    src = pd.read_csv(path, dtype=str, skipinitialspace=True)
    src.columns = [c.strip() for c in src.columns]
    need = ["label", "voice-path", "face-path"]
    if any(c not in src.columns for c in need):
        raise ValueError(f"{path}: expected columns {need}, found {list(src.columns)}")
    out, dropped = _resolve_pins_rows(src, index)
    file["rows"] = int(len(src))
    file["dropped"] = dropped
    print(f"[trials] {fname}: imported {len(out)} of {len(src)} rows"
          + (f" (dropped: {dropped})" if dropped else ""), file=sys.stderr)
    if not out:
        raise ValueError(f"no row of {path} resolved against the manifest's split {split!r} "
                         f"(dropped: {dropped}): is evaluation.pins.dir the right folder for this dataset?")
    lab, face, voice, fid, vid = map(list, zip(*out))
    frame = pd.DataFrame({
        "stratum": stratum, "trial": np.arange(len(out), dtype=np.int32),
        "label": np.asarray(lab, np.int8), "face": face, "voice": voice,
        "face_identity": fid, "voice_identity": vid,
    })
    file["cross_gender_negatives"] = cross_gender_negatives(frame, genders)
    notes = [f"{sum(dropped.values())} of {len(src)} trials dropped: {dropped}"] if dropped else []
    if file["cross_gender_negatives"] and "gender" in STRATUM_ATTRIBUTES[stratum]:
        notes.append(f"{file['cross_gender_negatives']} of the list's negatives pair identities of different "
                     f"genders in the metadata (the official list's own)")
    note = "; ".join(notes) or None
    return frame, _status(True, None, len(out), len(src), len(set(fid) | set(vid)), note=note), file


def cross_gender_negatives(frame: pd.DataFrame, genders: dict[str, str | None]) -> int:
    """The negatives of ``frame`` whose face and voice identities both have a gender in
    ``genders`` (identity -> gender), and different ones."""
    neg = frame[frame["label"] == 0]
    fg, vg = neg["face_identity"].map(genders), neg["voice_identity"].map(genders)
    return int((fg.notna() & vg.notna() & (fg != vg)).sum())


def import_pins(pins_dir: str | os.PathLike, manifest: pd.DataFrame, split: str,
                pins_set: str = "unseenunheard", strata: list[str] | None = None,
                manifest_path: str | None = None, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Verification trials from the official Learnable PINs lists, resolved to manifest items.

    Files ``veriflist_test_{random,G,N,A,GNA}_{pins_set}.txt`` with the header
    ``id,voice-speaker-id,face-speaker-id,label,voice-path,face-path``. A voice path
    ``Name/videoID_000000N.wav`` resolves to the manifest's voice item of clip N of that
    video of the identity whose ``name`` is Name. A face path ``Name/videoID/0007400.jpg``
    names a 25-fps frame of a VoxCeleb1 face track, which the manifest does not index: it
    resolves to one of the manifest's face items of the same identity and video, the one
    at position int(sha256(face path)[:16], 16) mod (number of such items) in item order,
    so one path always maps to one item. Trials that do not resolve (a name outside the
    split, a clip or video the manifest lacks) are dropped and counted per reason, and each
    list prints "imported N of M rows". A list that is missing, or of which no row resolves,
    raises ValueError with the reason: a wrong folder or set never yields an empty protocol.
    The trials are the lists' own: the G and GNA lists hold some negatives of identities whose
    genders differ in VoxCeleb1's metadata (a few identities' genders changed between the
    lists and vox1_meta.csv); each list's count of them is ``pins.files[S].cross_gender_negatives``
    in the metadata, and the G and GNA strata's ``note`` says so when it is not 0.
    """
    strata = list(strata or VERIFICATION_STRATA)
    rows = split_rows(manifest, split)
    if "name" not in rows.columns:
        raise ValueError("importing Learnable PINs lists needs the manifest's name column")
    pool = _Pool(rows, [])  # the lists name their strata: age bands play no part here
    index = _pins_index(rows)
    genders = {str(i): _none(g) for i, g in rows[["identity", "gender"]].drop_duplicates("identity").itertuples(
        index=False)} if "gender" in rows.columns else {}
    frames, status, files = [], {}, {}
    for stratum in strata:
        frame, status[stratum], files[stratum] = _import_pins_list(pins_dir, stratum, pins_set, split, index,
                                                                   genders)
        frames.append(frame)
    meta = {**_base_meta(rows, split, seed, {"pins_set": pins_set}, manifest_path, pool), "kind": "verification",
            "source": "learnable-pins", "pins": {"dir": str(pins_dir), "set": pins_set,
                                                 "files": files,
                                                 "face_resolution": "sha256(face path) mod items of the video"},
            "strata": status}
    return _concat(frames, VERIFICATION_SCHEMA), meta


# --------------------------------------------------------------------------- I/O


# --------------------------------------------------------------------------- synthetic data


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facevoice trials", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="results/<dataset>/shards/manifest.parquet")
    p.add_argument("--split", default=None,
                   help="default: the --protocol's, or test; " + ", ".join(f"{q.split} ({q.title.lower()}: {q.description})" for q in PROTOCOLS.values())
                   + " or val (model selection)")
    p.add_argument("--out", required=True, help="folder for the lists")
    p.add_argument("--seed", type=int, default=None, help="default: evaluation.seed of --config")
    p.add_argument("--config", default=None, help="config.yaml (its evaluation: section)")
    p.add_argument("--params", default=None,
                   help="JSON mapping shaped like the evaluation: section, over --config")
    p.add_argument("--import-pins", default=None, metavar="DIR",
                   help="take verification trials from official Learnable PINs lists in DIR")
    p.add_argument("--pins-set", default=None,
                   help=f"{' or '.join(PROTOCOLS)} (default: the protocol that tests --split)")
    p.add_argument("--language", default=None,
                   help="only the split's items in this language (the manifest's language column: FAME)")
    p.add_argument("--protocol", default=None,
                   help=f"a protocol's lists: its split and its item filter ({', '.join(PROTOCOLS)} or a name "
                        "of evaluation.declare in --config/--params)")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.params)
    seed = int(a.seed if a.seed is not None else cfg["seed"])
    try:
        proto = resolve(a.protocol, cfg) if a.protocol else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if proto and a.split and a.split != proto.split:
        print(f"error: --split {a.split} and --protocol {proto.name} (split {proto.split}) disagree: "
              "give one of them", file=sys.stderr)
        return 2
    split = proto.split if proto else a.split or UNSEEN_UNHEARD.split
    manifest = read_manifest(a.manifest)
    try:
        lists = generate(manifest, split, seed, cfg, manifest_path=str(a.manifest), language=a.language,
                         protocol=proto)
    except ValueError as exc:
        if a.language is None and not (proto and proto.filter):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pins_set = a.pins_set or (proto.pins_set if proto else PINS_SETS.get(split))
    pins_dir = a.import_pins or (cfg["pins"].get("dir") if pins_set in cfg["pins"]["sets"] else None)
    if pins_dir:
        try:
            lists["verification"] = import_pins(pins_dir, manifest, split, pins_set,
                                                cfg["verification"]["strata"], str(a.manifest), seed)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    write_trials(lists, a.out)
    for kind, (df, meta) in lists.items():
        bits = [f"{k}: {'%d' % s['n_trials'] if s['available'] else 'unavailable'}"
                for k, s in meta["strata"].items()]
        print(f"{kind} ({meta['source']}, {len(df)} rows): " + ", ".join(bits), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
