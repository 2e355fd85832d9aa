"""Online mirror descent on the probability simplex: the idea behind k1.5's policy update (2.3.1).

Each iteration solves  max_pi  E_{a ~ pi}[r(a)] - tau * KL(pi || pi_t)  over distributions pi. Its
closed form is  pi*(a) = pi_t(a) exp(r(a) / tau) / Z  (the report's 2.3.2 starts from the same form with
responses y in place of arms a). With eta = 1/tau this is the exponentiated-gradient step of mirror
descent with the negative-entropy mirror map. Beside it, for comparison, the two plain gradient-ascent
updates a reader might try: on the probabilities (then projected back onto the simplex) and on softmax
logits.

Introduced in {ref}`ch3-closed-form`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "kl",
    "kl_regularized_objective",
    "kl_regularized_optimum",
    "project_to_simplex",
    "projected_gradient_step",
    "softmax_gradient_step",
    "mirror_descent_path",
    "bandit_estimate",
    "bandit_path",
    "kl_ball_boundary",
]


def kl(p, q) -> float:
    """KL(p || q) = sum_a p(a) log(p(a) / q(a)), with 0 log 0 = 0; inf where p > 0 = q."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    support = p > 0
    if np.any(q[support] == 0):
        return float("inf")
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def kl_regularized_objective(pi, pi_ref, rewards, tau: float) -> float:
    """E_pi[r] - tau KL(pi || pi_ref): what one mirror-descent iteration maximises."""
    return float(np.dot(pi, rewards)) - tau * kl(pi, pi_ref)


def kl_regularized_optimum(pi_ref, rewards, tau: float) -> np.ndarray:
    """argmax_pi E_pi[r] - tau KL(pi || pi_ref) = pi_ref exp(r / tau) / Z (computed in log space)."""
    if tau <= 0:
        raise ValueError(f"tau = {tau} is invalid: it must be > 0 (tau -> 0 is the greedy argmax)")
    pi_ref, rewards = np.asarray(pi_ref, dtype=float), np.asarray(rewards, dtype=float)
    with np.errstate(divide="ignore"):
        logits = np.log(pi_ref) + rewards / tau  # log pi_ref + r / tau
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def project_to_simplex(v) -> np.ndarray:
    """Euclidean projection of v onto {p : p >= 0, sum p = 1} (the sort-based algorithm)."""
    v = np.asarray(v, dtype=float)
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1
    k = np.nonzero(u - cumulative / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - cumulative[k] / (k + 1), 0)


def projected_gradient_step(pi, rewards, eta: float) -> np.ndarray:
    """Plain gradient ascent on the probabilities (grad of E_pi[r] is r), projected onto the simplex."""
    return project_to_simplex(np.asarray(pi, dtype=float) + eta * np.asarray(rewards, dtype=float))


def softmax_gradient_step(pi, rewards, eta: float) -> np.ndarray:
    """Gradient ascent on logits theta with pi = softmax(theta): grad = pi * (r - E_pi[r])."""
    pi, rewards = np.asarray(pi, dtype=float), np.asarray(rewards, dtype=float)
    with np.errstate(divide="ignore"):
        theta = np.log(pi) + eta * pi * (rewards - np.dot(pi, rewards))
    theta -= theta.max()
    return np.exp(theta) / np.exp(theta).sum()


def mirror_descent_path(pi0, reward_fn, tau: float, steps: int) -> np.ndarray:
    """Iterates pi_0, ..., pi_steps of pi_{t+1} = kl_regularized_optimum(pi_t, reward_fn(t), tau): (steps+1, A).

    ``reward_fn(t)`` gives the reward vector seen at step t (fixed, or sampled: noisy).
    """
    path = [np.asarray(pi0, dtype=float)]
    for t in range(steps):
        path.append(kl_regularized_optimum(path[-1], reward_fn(t), tau))
    return np.stack(path)


def bandit_estimate(pi, arms, payoffs, baseline: float = 0.0) -> np.ndarray:
    """Every arm's mean reward estimated from ``m`` arms sampled from ``pi`` (bandit feedback: a policy sees
    only the rewards of what it sampled): r_hat(a) = b + sum_i 1[a_i = a] (R_i - b) / (m pi(a)), (A,).

    Unbiased for r(a) wherever pi(a) > 0, for any fixed baseline b, which changes only the variance; an arm
    with small pi(a) gets a rare, large correction (the 1 / pi(a) of importance weighting).
    """
    pi, arms = np.asarray(pi, dtype=float), np.asarray(arms)
    estimate = np.full(len(pi), float(baseline))
    np.add.at(estimate, arms, (np.asarray(payoffs, dtype=float) - baseline) / (len(arms) * pi[arms]))
    return estimate


def bandit_path(step, eta: float, means, seed: int, steps: int = 30, samples: int = 8, baseline: float = 0.5):
    """Iterates pi_0 (uniform), ..., pi_steps of ``step(pi, r_hat, eta)`` under bandit feedback: each step
    samples ``samples`` arms from pi, draws a 0/1 reward for each (Bernoulli ``means``) and updates with
    :func:`bandit_estimate`. Returns (steps + 1, A)."""
    rng = np.random.default_rng(seed)
    means = np.asarray(means, dtype=float)
    path = [np.ones(len(means)) / len(means)]
    for _ in range(steps):
        pi = path[-1]
        arms = rng.choice(len(pi), size=samples, p=pi)  # (m,) the arms the policy tried
        payoffs = (rng.random(samples) < means[arms]).astype(float)  # (m,) their 0/1 rewards
        path.append(step(pi, bandit_estimate(pi, arms, payoffs, baseline), eta))
    return np.stack(path)


def kl_ball_boundary(center, eps: float, n: int = 180) -> np.ndarray:
    """Points p on the 3-simplex with KL(p || center) = eps, one per direction from ``center``: (n, 3).

    Along each direction in the plane sum p = 1, bisect the distance at which KL reaches ``eps``; where the
    simplex edge comes first, the boundary point lies on the edge (the ball is cut by the simplex).
    """
    center = np.asarray(center, dtype=float)
    basis = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / np.array([[np.sqrt(2)], [np.sqrt(6)]])  # (2, 3)
    points = []
    for angle in np.linspace(0, 2 * np.pi, n, endpoint=False):
        direction = np.cos(angle) * basis[0] + np.sin(angle) * basis[1]  # (3,), sums to 0
        negative = direction < 0
        edge = np.min(center[negative] / -direction[negative])  # distance to the simplex boundary
        lo, hi = 0.0, edge
        if kl(np.clip(center + edge * direction, 0, None), center) <= eps:
            points.append(np.clip(center + edge * direction, 0, None))
            continue
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if kl(center + mid * direction, center) < eps else (lo, mid)
        points.append(center + lo * direction)
    return np.stack(points)
