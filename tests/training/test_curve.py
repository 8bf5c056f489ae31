"""``curve.png``: one panel per kind of logged figure, each term its own colour, selection
marks only where a stage selects, no empty panel (checked on the matplotlib figure)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from facevoice.training import curve  # noqa: E402
from facevoice.training.methods.avgatn import AVGATN  # noqa: E402
from facevoice.training.methods.chance import Chance  # noqa: E402
from facevoice.training.methods.voice2face import Voice2Face  # noqa: E402

ROW = {"steps": 4, "samples": 32, "lr": 1e-3, "seconds": 1.0, "data_s": 0.1, "skipped": 0}


def _history(stages: dict[str, tuple[int, dict]], best: dict[str, int]) -> list[dict]:
    """log.csv rows: per stage, its epochs and {term: value at epoch e as a function of e}."""
    rows, epoch = [], 0
    for stage, (n, terms) in stages.items():
        for _ in range(n):
            epoch += 1
            rows.append({"epoch": epoch, "stage": stage, **ROW, **{t: f(epoch) for t, f in terms.items()},
                         "val_auc": 0.5 + 0.01 * epoch, "best": best.get(stage) == epoch})
    return rows


# avgatn's stages and terms as it logs them (the gan stage's log-likelihoods fall far below 0)
AVGATN_LOG = _history({
    "face_features": (3, {"loss": lambda e: 3 - 0.1 * e, "face_id": lambda e: 3 - 0.1 * e,
                          "face_acc": lambda e: 0.1 * e}),
    "gan": (3, {"loss": lambda e: -30.0 * e, "d": lambda e: -20.0 * e, "d_f": lambda e: -10.0 * e,
                "d_a": lambda e: -10.0 * e, "g": lambda e: -10.0 * e, "cos_s": lambda e: 0.1}),
    "match": (3, {"loss": lambda e: 2 - 0.1 * e, "triplet": lambda e: 0.2, "id": lambda e: 2 - 0.1 * e,
                  "id_acc": lambda e: 0.05 * e}),
}, best={"face_features": 3, "gan": 5, "match": 8})


def _colours(ax) -> list[str]:
    return [to_hex(ln.get_color()) + ln.get_linestyle() for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def _labels(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def test_avgatn_has_a_panel_per_kind_and_a_colour_per_term():
    fig = curve.figure_curve(AVGATN_LOG, "avgatn (demo)", AVGATN.select_last, AVGATN.adversarial_stages)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [curve.PANELS[k][0] for k in ("loss", "accuracy", "adversarial", "val_auc")]
    loss, acc, adv, auc = fig.axes
    assert _labels(loss) == ["loss (face_features)", "face_id", "loss (match)", "triplet", "id"]
    assert _labels(acc) == ["face_acc", "id_acc"] and acc.get_ylim()[1] <= 1.05
    assert _labels(adv) == ["loss (gan)", "d", "d_f", "d_a", "g", "cos_s"]
    # the game's values (down to -90) do not set the losses' scale
    assert loss.get_ylim()[0] > -1 and adv.get_ylim()[0] < -80
    terms = [c for ax in (loss, acc, adv) for c in _colours(ax)]
    assert len(terms) == 13 and len(set(terms)) == len(terms)  # no two terms share a colour
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy", "value", "AUC"]
    fig.canvas.draw()
    for ax in fig.axes:  # every legend outside its panel's data area
        assert not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent()), ax.get_title()
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    # face_features and gan keep their last epoch (select_last): only match selects, and is ringed
    ring = auc.collections[0]
    assert ring.get_label() == "kept (best of its stage)" and [tuple(p) for p in ring.get_offsets()] == [
        (8, pytest.approx(0.58))]
    plt.close(fig)


def test_a_stage_that_selects_nothing_has_no_ring():
    """voice2face keeps the last epoch of both stages: no epoch is marked as selected."""
    log = _history({"pretrain": (2, {"loss": lambda e: 1.0, "voice_acc": lambda e: 0.5}),
                    "gan": (2, {"loss": lambda e: 2.0, "d_real": lambda e: 0.6, "face_acc": lambda e: 0.4})},
                   best={"pretrain": 2, "gan": 4})
    fig = curve.figure_curve(log, "voice2face (demo)", Voice2Face.select_last, Voice2Face.adversarial_stages)
    auc = fig.axes[-1]
    assert not auc.collections and "kept (best of its stage)" not in _labels(auc)
    assert [ax.get_title() for ax in fig.axes] == [curve.PANELS[k][0] for k in ("loss", "accuracy", "adversarial",
                                                                                 "val_auc")]
    plt.close(fig)
    # the same log with a stage that selects: its best epoch ringed
    fig = curve.figure_curve(log, "x", ("pretrain",), ())
    assert [tuple(p)[0] for p in fig.axes[-1].collections[0].get_offsets()] == [4]
    plt.close(fig)


def test_chance_draws_its_validation_auc_alone(tmp_path):
    """Nothing trained (no loss term): no empty panel; the title says so; the file is written."""
    log = [{"epoch": 1, "stage": "main", **ROW, "steps": 0, "samples": 0, "val_auc": 0.49, "best": True}]
    fig = curve.figure_curve(log, "chance (demo)", Chance.select_last, Chance.adversarial_stages)
    assert [ax.get_title() for ax in fig.axes] == [curve.PANELS["val_auc"][0]]
    assert fig.get_suptitle() == "chance (demo): nothing trained (no loss terms)"
    plt.close(fig)
    curve.plot_curve(log, tmp_path / "curve.png", "chance (demo)")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
