"""The statistics of human evaluation: do raters agree, and which model do people prefer?

Pure functions on plain lists, so they can be read, tested and reused without the store
(evaluation/human.py) or the API.

- **Fleiss' kappa** (Fleiss, 1971): agreement among several raters who each put every item into
  one category, corrected for the agreement that chance alone would give. 1 is perfect agreement,
  0 is what raters picking at random with the same overall frequencies would reach, below 0 is
  worse than chance. Rough reading (Landis and Koch, 1977): < 0.2 slight, 0.2-0.4 fair, 0.4-0.6
  moderate, 0.6-0.8 substantial, > 0.8 almost perfect. Low agreement means the ratings are noise
  and no leaderboard built on them should be trusted.
- **Bradley-Terry** (1952): every model has a strength p, and model i beats model j with
  probability p_i / (p_i + p_j). The strengths that make the observed votes most likely are found
  by the minorization-maximization (MM) algorithm of Hunter (2004). Chatbot Arena reports them on
  an Elo-like scale, 400 * log10(p) + constant: 400 points more means 10 to 1 odds of winning.
- **Bootstrap intervals**: resample the votes with replacement, fit again, and take the 2.5th and
  97.5th percentiles of each model's rating; **ranks** that respect them (Chatbot Arena's rule):
  a model is outranked only by the models that are better beyond doubt.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

SCALE, BASE, INIT = 400.0, 10.0, 1000.0  # Chatbot Arena's Elo-like scale, anchored so the mean is 1000


def fleiss_kappa(counts: list[list[int]], raters: int | None = None) -> float:
    """Fleiss' kappa of an items x categories table of counts (how many raters put item i in category j).

    Fleiss' formula assumes every item was rated by the same number of raters n: items rated by
    another number (by default: fewer than the most any item has) are dropped. The observed
    agreement is the mean over items of the share of rater pairs that agree,
    P_i = (sum_j n_ij^2 - n) / (n (n - 1)); chance agreement is P_e = sum_j p_j^2 with p_j the share
    of all ratings in category j; kappa = (mean P_i - P_e) / (1 - P_e).

    Args:
        counts: one row per item, one column per category.
        raters: the number of raters per item to keep; None: the largest row total.

    Returns:
        kappa, or NaN when it is undefined: fewer than 2 raters, no item left, or every rating in
        one category (chance agreement is then 1 and there is nothing left to explain).

    Example (Wikipedia's: 10 items, 14 raters, 5 categories):
        >>> table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        ...          [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
        >>> round(fleiss_kappa(table), 3)
        0.21
        >>> fleiss_kappa([[2, 0], [0, 2], [2, 0]])  # two raters who always agree
        1.0
    """
    rows = [[int(c) for c in row] for row in counts]
    n = raters if raters is not None else max((sum(r) for r in rows), default=0)
    kept = np.array([r for r in rows if sum(r) == n], dtype=float)
    if n < 2 or kept.size == 0:
        return math.nan
    p_j = kept.sum(axis=0) / (len(kept) * n)
    p_i = ((kept ** 2).sum(axis=1) - n) / (n * (n - 1))
    p_e = float((p_j ** 2).sum())
    if math.isclose(p_e, 1.0):
        return math.nan
    return float((p_i.mean() - p_e) / (1 - p_e))


def modal_raters(totals: list[int]) -> int | None:
    """The most common number of raters per item among items with at least 2 (ties: the larger).

    >>> modal_raters([1, 2, 3, 3, 2, 3])
    3
    """
    c = Counter(t for t in totals if t >= 2)
    return max(c, key=lambda t: (c[t], t)) if c else None


# ---------------------------------------------------------------------------- Bradley-Terry


def _win_matrices(battles: list[tuple[str, str, float]], models: list[str],
                  weights: np.ndarray) -> np.ndarray:
    """W[b, i, j]: the wins of model i over model j in each of the weightings `weights` (B, battles).

    A battle scored s for its first model adds s to W[a, b] and 1 - s to W[b, a]: a tie is half a
    win each."""
    k, index = len(models), {m: i for i, m in enumerate(models)}
    credit = np.zeros((len(battles), k * k))
    for t, (a, b, s) in enumerate(battles):
        credit[t, index[a] * k + index[b]] += s
        credit[t, index[b] * k + index[a]] += 1 - s
    return (weights @ credit).reshape(len(weights), k, k)


def _distinct(battles: list[tuple[str, str, float]]) -> tuple[list[tuple[str, str, float]], np.ndarray]:
    """The distinct battles and how often each occurs."""
    c = Counter((a, b, float(s)) for a, b, s in battles)
    return list(c), np.array(list(c.values()), dtype=float)


def _has_mle(w: np.ndarray) -> np.ndarray:
    """Per matrix: whether the maximum likelihood strengths exist (are finite and positive).

    They do iff the "i won something against j" graph is strongly connected (Zermelo 1929; Hunter
    2004, Assumption 1): otherwise some group of models never lost to the rest, and the likelihood
    keeps growing as their strength goes to infinity."""
    k = w.shape[-1]
    reach = ((w > 0) | np.eye(k, dtype=bool)).astype(float)
    for _ in range(max(1, math.ceil(math.log2(max(k, 2)))) + 1):  # paths of length 1, 2, 4, ...: all of < k
        reach = (reach @ reach > 0).astype(float)
    return reach.all(axis=(-2, -1))


def _mm(w: np.ndarray, tol: float = 1e-10, max_iter: int = 100_000) -> np.ndarray:
    """Hunter's MM update, on a batch of win matrices (B, k, k) at once: log strengths (B, k).

    p_i <- W_i / sum_j N_ij / (p_i + p_j), with W_i the wins of i and N_ij the games of i and j. Each
    step can only raise the likelihood (it maximises a function that touches it from below), which
    is why it needs no step size. Strengths are scaled so their geometric mean is 1 after each step.
    """
    games = w + np.swapaxes(w, -1, -2)
    wins = w.sum(axis=-1)
    log_p = np.zeros(wins.shape)
    active = np.arange(len(w))  # the fits still moving: a converged one stops costing time
    for _ in range(max_iter):
        g, lp = games[active], log_p[active]
        p = np.exp(lp)
        denom = (g / (p[:, :, None] + p[:, None, :])).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.where(denom > 0, np.log(wins[active]) - np.log(denom), 0.0)  # no games: stays put
        new -= new.mean(axis=-1, keepdims=True)
        log_p[active] = new
        active = active[np.abs(new - lp).max(axis=-1) >= tol]
        if not len(active):
            break
    return log_p


def _fit(battles: list[tuple[str, str, float]], models: list[str], weights: np.ndarray,
         prior: float | None) -> np.ndarray:
    """Elo-like ratings (B, k) for each weighting of the battles; NaN for a model without games."""
    w = _win_matrices(battles, models, weights)
    k = len(models)
    played = (w + np.swapaxes(w, -1, -2)).sum(axis=-1) > 0  # (B, k): a resample may leave a model out
    if prior is None:  # only where the MLE does not exist: one virtual tie per pair of models
        extra = np.where(_has_mle(w), 0.0, 1.0)
    else:
        if prior == 0 and not _has_mle(w).all():
            raise ValueError("no finite maximum likelihood: some models never lost (or never won) against "
                             "the rest; pass prior > 0 or None")
        extra = np.full(len(w), float(prior))
    w = w + extra[:, None, None] * 0.5 * (1 - np.eye(k))
    ratings = np.where(played, SCALE * _mm(w) / math.log(BASE), np.nan)
    return ratings - np.nanmean(ratings, axis=-1, keepdims=True) + INIT


def bradley_terry(battles: list[tuple[str, str, float]], prior: float | None = None) -> dict[str, float]:
    """Bradley-Terry ratings of the models in `battles`, on Chatbot Arena's Elo-like scale.

    Each battle is `(model_a, model_b, score of model_a)`: 1 if A won, 0 if B won, 0.5 for a tie.
    The human store scores "both bad" as a tie too, as Chatbot Arena does: neither answer was
    preferred, and preference is all that Bradley-Terry models. Dropping those votes instead would
    hide that two models were often equally poor; the leaderboard counts them apart (`both_bad`).
    The strengths are the maximum likelihood ones (Hunter's MM algorithm), reported as
    400 * log10(strength), shifted so the mean rating is 1000.

    With few votes the maximum likelihood may not exist: a model that won all its battles would
    get an infinite rating. By default (`prior=None`) one virtual tie between every pair of models
    is then added, which keeps every rating finite and pulls the unbeaten ones back toward the
    rest (a mild Bayesian prior); when the MLE exists nothing is added. A number forces that many
    virtual ties per pair always; 0 forces the pure MLE (ValueError if it does not exist).

    Example: A beat B 3 times out of 4, so p_A / p_B = 3 and A is 400 * log10(3) = 191 points ahead.
        >>> r = bradley_terry([("A", "B", 1.0)] * 3 + [("A", "B", 0.0)])
        >>> round(r["A"] - r["B"]), round(r["A"] + r["B"])
        (191, 2000)
    """
    models = sorted({m for a, b, _ in battles for m in (a, b)})
    if not models:
        return {}
    distinct, counts = _distinct(battles)
    ratings = _fit(distinct, models, counts[None], prior)[0]
    return {m: float(r) for m, r in zip(models, ratings)}


def bootstrap_ratings(battles: list[tuple[str, str, float]], iters: int = 1000, seed: int = 0,
                      prior: float | None = None) -> dict[str, dict]:
    """Bradley-Terry ratings with 95% bootstrap intervals: `{model: {"rating", "ci95": [lo, hi]}}`.

    The votes are resampled with replacement `iters` times (a multinomial draw of how often each
    vote is taken), every resample is fitted (all at once, as one batch of MM iterations), and each
    model's interval is the 2.5th-97.5th percentile of its ratings. `rating` is the fit on all the
    votes. Fewer votes, wider intervals: the interval is what makes two ratings comparable at all.

    Example:
        >>> r = bootstrap_ratings([("A", "B", 1.0)] * 30 + [("A", "B", 0.0)] * 10, iters=200)
        >>> lo, hi = r["A"]["ci95"]
        >>> lo < r["A"]["rating"] < hi and r["A"]["rating"] > r["B"]["ci95"][1]
        True
    """
    models = sorted({m for a, b, _ in battles for m in (a, b)})
    if not models:
        return {}
    distinct, counts = _distinct(battles)
    point = _fit(distinct, models, counts[None], prior)[0]
    # Drawing len(battles) votes with replacement = a multinomial draw of how often each distinct
    # vote (same models, same outcome) comes up: the same resample, in far fewer numbers.
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(battles), counts / counts.sum(), size=iters).astype(float)
    boot = _fit(distinct, models, weights, prior)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    return {m: {"rating": float(point[i]), "ci95": [float(lo[i]), float(hi[i])]} for i, m in enumerate(models)}


def ranks(ratings_with_ci: dict[str, dict]) -> dict[str, int]:
    """Chatbot Arena's rank: 1 + the number of models whose lower bound is above this one's upper bound.

    So a model is ranked below another only when their intervals do not overlap, and models that
    cannot be told apart share a rank (which is why ranks can repeat and skip).

    Example:
        >>> ranks({"A": {"ci95": [1100, 1200]}, "B": {"ci95": [1050, 1150]}, "C": {"ci95": [900, 1000]}})
        {'A': 1, 'B': 1, 'C': 3}
    """
    return {m: 1 + sum(o["ci95"][0] > r["ci95"][1] for o in ratings_with_ci.values())
            for m, r in ratings_with_ci.items()}


def mean_se(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and its standard error (sample standard deviation / sqrt(n)); None where undefined.

    >>> mean_se([3, 4, 5])
    (4.0, 0.5773502691896258)
    """
    if not values:
        return None, None
    x = np.asarray(values, dtype=float)
    return float(x.mean()), (float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else None)
