"""The design's open question "instrumental?": popularity of vocal and instrumental tracks.

When a run loaded the ``musicnn`` feature set, the report splits the benchmark's rows by MSD
MusiCNN's tags and shows their popularity per group, with 95% bootstrap intervals over songs
(the resamples of :class:`~benchmark.metrics.SongBootstrap`, as the rest of the report).

The rule
--------
A track is **instrumental** when MusiCNN rates the tag ``instrumental`` at least as likely as
vocals, and **vocal** otherwise::

    p(instrumental) >= p(vocals) = 1 - (1 - p(female vocalists)) (1 - p(male vocalists))
                                     (1 - p(female vocalist))

(the noisy-OR of MSD's three vocal tags). Why not ``p(instrumental) > 0.5``: the MSD tags are
sparse last.fm tags and the tagger's probabilities stay low for every tag but a few genres;
the instrumental preview in ``../shared/data/audio`` (Kevin MacLeod, *Vibe Ace*) gets
p(instrumental) = 0.11 (its top tag, jazz, 0.43), and the demo's synthetic, wordless songs
0.02-0.18, so a 0.5 threshold would call nothing instrumental. Comparing the tag with the vocal
tags asks which of the two the network finds more likely (*Vibe Ace*: 0.11 against 0.05). Since
any threshold is a choice, the section also gives a threshold-free view: the Spearman
correlation between p(instrumental) and the target within each region.

Values: the mean target per group; the mean *region-centred* target (each row minus its
region's mean, recomputed in every resample, so that groups charting in different regions are
compared fairly); the difference instrumental - vocal of the latter; and the within-region
Spearman correlation of p(instrumental) with the target.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import BenchmarkData
from .metrics import METRICS, SongBootstrap, percentile_interval

FEATURE_SET = "musicnn"
"""The feature set whose tags the section reads."""
INSTRUMENTAL_TAG = "msd_tag_instrumental"
VOCAL_TAGS = ("msd_tag_female_vocalists", "msd_tag_male_vocalists", "msd_tag_female_vocalist")
GROUPS = ("instrumental", "vocal")
RULE = (
    "instrumental: MSD MusiCNN's p(instrumental) >= p(vocals), the noisy-OR of its tags "
    "female vocalists, male vocalists, female vocalist; vocal otherwise"
)
COLUMNS = ["group", "target", "statistic", "value", "ci_low", "ci_high", "n_rows", "n_songs"]


def vocal_groups(tags: pd.DataFrame) -> pd.Series:
    """The group of each row by :data:`RULE`.

    Parameters
    ----------
    tags : pandas.DataFrame
        :data:`INSTRUMENTAL_TAG` and :data:`VOCAL_TAGS` probabilities per row.

    Returns
    -------
    pandas.Series
        ``instrumental`` or ``vocal`` (same index).
    """
    vocals = 1.0 - np.prod(1.0 - tags[list(VOCAL_TAGS)].to_numpy(dtype=float), axis=1)
    instrumental = tags[INSTRUMENTAL_TAG].to_numpy(dtype=float) >= vocals
    return pd.Series(np.where(instrumental, *GROUPS), index=tags.index, name="group")


def _group_means(
    y: np.ndarray, w: np.ndarray, regions: np.ndarray, groups: np.ndarray
) -> dict[str, np.ndarray]:
    """Per group: weighted mean of ``y`` and of ``y`` minus its region's weighted mean, (b,)."""
    one_hot = np.eye(int(regions.max()) + 1)[regions]  # (N, R)
    with np.errstate(invalid="ignore", divide="ignore"):
        region_mean = (w @ (y[:, None] * one_hot)) / (w @ one_hot)  # (b, R)
        region_mean = np.nan_to_num(region_mean)  # a region not drawn: its rows weigh 0
        centred = y[None, :] - region_mean[:, regions]  # (b, N)
        out = {}
        for g in range(len(GROUPS)):
            member = groups == g  # (N,)
            weight = w[:, member].sum(axis=1)  # (b,)
            out[f"mean_{g}"] = (w[:, member] @ y[member]) / weight
            out[f"centred_{g}"] = (w[:, member] * centred[:, member]).sum(axis=1) / weight
    return out


def instrumental_table(
    data: BenchmarkData, n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame | None:
    """Popularity of vocal and instrumental rows, with song-bootstrap intervals.

    Parameters
    ----------
    data : BenchmarkData
        The run's rows; the section needs the ``musicnn`` feature set among its inputs.
    n_resamples : int
        Bootstrap resamples over songs (0: no intervals).
    seed : int
        Seed of the resamples.

    Returns
    -------
    pandas.DataFrame or None
        None without the ``musicnn`` tags; else one row per (group, target, statistic) with
        :data:`COLUMNS`. Statistics: ``mean`` and ``region_centred_mean`` for the groups
        ``instrumental`` and ``vocal``, ``difference`` (group ``instrumental - vocal``, of the
        region-centred means) and ``spearman_region`` (group ``all``: p(instrumental) against
        the target, within each region, averaged over regions).
    """
    inputs = data.inputs.get(FEATURE_SET)
    needed = [INSTRUMENTAL_TAG, *VOCAL_TAGS]
    if inputs is None or inputs.columns is None or not set(needed) <= set(inputs.columns):
        return None
    frame = data.frame
    tags = inputs.columns[needed]
    groups = vocal_groups(tags)
    group_codes = groups.map({g: i for i, g in enumerate(GROUPS)}).to_numpy()
    regions = np.unique(frame["region"].astype(str), return_inverse=True)[1]
    songs = frame["song_id"].astype(str).to_numpy()
    boot = SongBootstrap(songs, n_resamples, seed)
    spearman = METRICS["spearman_region"]
    one_fold = np.zeros(len(frame), dtype=int)
    p_instrumental = tags[INSTRUMENTAL_TAG].to_numpy(dtype=float)

    rows = []

    def add(
        group: str, target: str, statistic: str, point: float, draws: np.ndarray, mask: np.ndarray
    ) -> None:
        low, high = percentile_interval(draws)
        rows.append(
            {
                "group": group,
                "target": target,
                "statistic": statistic,
                "value": point,
                "ci_low": low,
                "ci_high": high,
                "n_rows": int(mask.sum()),
                "n_songs": int(pd.Series(songs[mask]).nunique()),
            }
        )

    for target in data.targets:
        y = frame[target].to_numpy(dtype=float)
        keep = np.isfinite(y)
        y, r, g = y[keep], regions[keep], group_codes[keep]
        point = _group_means(y, np.ones((1, len(y))), r, g)
        draws: dict[str, list[np.ndarray]] = {k: [] for k in point}
        rho_draws = []
        for w in boot.weight_blocks(np.flatnonzero(keep)):
            for key, value in _group_means(y, w, r, g).items():
                draws[key].append(value)
            rho_draws.append(spearman.batch(y, p_instrumental[keep], w, r, one_fold[keep]))
        stacked = {k: np.concatenate(v) if v else np.empty(0) for k, v in draws.items()}
        for i, group in enumerate(GROUPS):
            member = (groups == group).to_numpy() & keep
            mean, centred = f"mean_{i}", f"centred_{i}"
            add(group, target, "mean", float(point[mean][0]), stacked[mean], member)
            add(
                group,
                target,
                "region_centred_mean",
                float(point[centred][0]),
                stacked[centred],
                member,
            )
        add(
            "instrumental - vocal",
            target,
            "difference",
            float(point["centred_0"][0] - point["centred_1"][0]),
            stacked["centred_0"] - stacked["centred_1"],
            keep,
        )
        rho = spearman.batch(y, p_instrumental[keep], np.ones((1, len(y))), r, one_fold[keep])
        add(
            "all",
            target,
            "spearman_region",
            float(rho[0]),
            np.concatenate(rho_draws) if rho_draws else np.empty(0),
            keep,
        )
    return pd.DataFrame(rows, columns=COLUMNS)
