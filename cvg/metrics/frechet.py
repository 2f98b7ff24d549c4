"""Pure metric math on I3D outputs: Fréchet distance (FVD on logits, FID on features) and the
Inception Score from the logits' softmax."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg


def gaussian_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) activations, in float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need (N >= 2, D) activations, got {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)), with scipy.linalg.sqrtm as the reference.

    Safeguard for near-singular covariances (fewer samples than dimensions, as with 400 logits
    from a few hundred clips): when sqrtm is not finite, eps is added to both diagonals.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(f"Fréchet distance: singular product of covariances; adding {eps} to the diagonals", stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.abs(covmean.imag).max():.3g} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_from_samples(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two activation sets (N, D). With no more clips than dimensions in
    either set (48 clips of 400 logits in the demo) the covariances are singular, and sqrtm of
    their product carries numerical imaginary parts (0.002-1 measured) that make the D x D route
    fail; the sample-space form is exact there and cannot. Otherwise (paper scale: thousands of
    clips) the D x D route is the cheaper one."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim == 2 and b.ndim == 2 and min(len(a), len(b)) <= a.shape[1]:
        return frechet_in_sample_space(a, b)
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def frechet_in_sample_space(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of ``frechet_from_samples``, computed through the samples.

    With S_a = A A^T and S_b = B B^T (A, B: centred samples over sqrt(n - 1), D x n), the nonzero
    eigenvalues of S_a S_b are the squared singular values of B^T A, so tr sqrtm(S_a S_b) is the
    nuclear norm of the n_b x n_a matrix B^T A: exact, and O(n^2 D) instead of O(D^3), which is
    what makes resampling affordable when there are fewer clips than dimensions.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) < 2 or len(b) < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (N >= 2, D) activation sets of the same D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = (a - mu_a) / np.sqrt(len(a) - 1), (b - mu_b) / np.sqrt(len(b) - 1)
    diff = mu_a - mu_b
    cross = np.linalg.svd(cb @ ca.T, compute_uv=False).sum()
    return float(diff @ diff + (ca * ca).sum() + (cb * cb).sum() - 2 * cross)


def paired_bootstrap(model: np.ndarray, baseline: np.ndarray, reference: np.ndarray, n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Fréchet distance of ``model`` minus that of ``baseline`` (both against ``reference``), with
    a percentile bootstrap interval.

    ``model`` and ``baseline`` rows are paired (sample i of both comes from the same noise or the
    same real input), so each resample draws the same row indices for both, and an independent
    set of reference rows shared by the two: the interval is the uncertainty of the *difference*
    due to which clips were scored. It says nothing of training-run variance, which only
    retraining measures.
    """
    if model.shape != baseline.shape:
        raise ValueError(f"paired sets must have the same shape, got {model.shape} and {baseline.shape}")
    rng = np.random.default_rng(seed)
    n, m = len(model), len(reference)
    deltas = np.empty(n_boot)
    for i in range(n_boot):
        pick, ref = rng.integers(0, n, n), reference[rng.integers(0, m, m)]
        deltas[i] = frechet_in_sample_space(model[pick], ref) - frechet_in_sample_space(baseline[pick], ref)
    tail = (1 - level) / 2
    return {
        "delta": frechet_in_sample_space(model, reference) - frechet_in_sample_space(baseline, reference),
        "ci_low": float(np.quantile(deltas, tail)),
        "ci_high": float(np.quantile(deltas, 1 - tail)),
        "p_better": float((deltas < 0).mean()),
        "n_boot": n_boot,
    }


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` disjoint splits."""
    logits = np.asarray(logits, dtype=np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for part in np.array_split(p, splits):
        if len(part) == 0:
            continue
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
