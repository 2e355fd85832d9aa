import numpy as np
import pytest

from kimi_mini.exercises import check_kl_optimum
from kimi_mini.mirror import (
    kl,
    kl_ball_boundary,
    kl_regularized_objective,
    kl_regularized_optimum,
    mirror_descent_path,
    project_to_simplex,
    projected_gradient_step,
    softmax_gradient_step,
)


def test_kl_basics():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    assert kl(p, p) == 0.0
    assert kl(p, q) == pytest.approx(np.log(2))
    assert kl(q, p) == float("inf")
    assert kl([0.2, 0.8], [0.5, 0.5]) > 0


@pytest.mark.parametrize("tau", [0.05, 0.3, 1.0, 5.0])
def test_closed_form_beats_every_other_distribution(tau):
    rng = np.random.default_rng(0)
    pi_ref, r = rng.dirichlet(np.ones(4)), rng.normal(size=4)
    best = kl_regularized_optimum(pi_ref, r, tau)
    value = kl_regularized_objective(best, pi_ref, r, tau)
    for other in rng.dirichlet(np.ones(4), size=2000):
        assert kl_regularized_objective(other, pi_ref, r, tau) <= value + 1e-12


def test_closed_form_limits_and_stability():
    pi_ref, r = np.array([0.2, 0.3, 0.5]), np.array([1.0, 0.0, -1.0])
    assert np.allclose(kl_regularized_optimum(pi_ref, r, 1e6), pi_ref, atol=1e-5)  # tau -> inf: stay put
    assert np.allclose(kl_regularized_optimum(pi_ref, r, 1e-3), [1, 0, 0])  # tau -> 0: greedy, no overflow
    assert kl_regularized_optimum([0.0, 0.5, 0.5], r, 0.1)[0] == 0  # zero stays zero
    with pytest.raises(ValueError, match="tau"):
        kl_regularized_optimum(pi_ref, r, 0)


def test_mirror_step_stays_in_the_kl_ball():
    rng = np.random.default_rng(1)
    for _ in range(500):
        pi, r, tau = rng.dirichlet(np.ones(3)), rng.random(3), rng.choice([0.1, 0.5, 2.0])
        new = kl_regularized_optimum(pi, r, tau)
        assert kl(new, pi) <= (r.max() - r.min()) / tau + 1e-12


def test_projection_and_plain_steps():
    assert np.allclose(project_to_simplex([0.2, 0.3, 0.5]), [0.2, 0.3, 0.5])
    assert np.allclose(project_to_simplex([2.0, 0.0, 0.0]), [1, 0, 0])
    p = project_to_simplex(np.random.default_rng(0).normal(size=6))
    assert p.min() >= 0 and p.sum() == pytest.approx(1)
    assert projected_gradient_step([1 / 3] * 3, [1, 0, 0], 2.0)[1:].sum() == 0  # a big step zeroes arms
    assert softmax_gradient_step([1 / 3] * 3, [1, 0, 0], 2.0).min() > 0  # softmax never does


def test_path_converges_to_the_best_arm():
    path = mirror_descent_path([1 / 3] * 3, lambda t: np.array([0.3, 0.5, 0.7]), tau=0.2, steps=40)
    assert path.shape == (41, 3) and path[-1].argmax() == 2 and path[-1][2] > 0.99


def test_kl_ball_boundary_lies_on_the_ball_or_the_edge():
    center = np.array([0.6, 0.3, 0.1])
    for eps in (0.05, 0.5):
        pts = kl_ball_boundary(center, eps, n=60)
        assert np.allclose(pts.sum(1), 1) and (pts >= -1e-12).all()
        d = np.array([kl(p, center) for p in pts])
        on_edge = pts.min(1) < 1e-9
        assert np.allclose(d[~on_edge], eps, atol=1e-6) and (d[on_edge] <= eps + 1e-9).all()


def test_kl_optimum_check_accepts_and_rejects():
    assert check_kl_optimum(kl_regularized_optimum).startswith("All ")

    def naive(pi_ref, r, tau):  # overflows for large r / tau
        with np.errstate(all="ignore"):
            w = np.asarray(pi_ref) * np.exp(np.asarray(r) / tau)
            return w / w.sum()

    with pytest.raises(AssertionError):
        check_kl_optimum(naive)
    with pytest.raises(AssertionError):
        check_kl_optimum(lambda pi_ref, r, tau: np.asarray(pi_ref))


def test_bandit_estimate_is_unbiased_for_every_arm_it_can_sample():
    from kimi_mini.mirror import bandit_estimate

    rng = np.random.default_rng(0)
    pi, means = np.array([0.6, 0.3, 0.1]), np.array([0.3, 0.5, 0.7])
    draws = []
    for _ in range(20_000):
        arms = rng.choice(3, size=8, p=pi)
        draws.append(bandit_estimate(pi, arms, rng.random(8) < means[arms], baseline=0.5))
    draws = np.array(draws)  # (N, 3)
    stderr = draws.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - means) < 4 * stderr)
    assert draws.std(0)[2] > 2 * draws.std(0)[0]  # the rare arm's estimate is the noisy one (1 / pi)


def test_bandit_path_is_seeded_and_stays_on_the_simplex():
    from kimi_mini.mirror import bandit_path, kl_regularized_optimum, projected_gradient_step

    means = [0.3, 0.5, 0.7]
    md = lambda pi, r, eta: kl_regularized_optimum(pi, r, 1 / eta)  # noqa: E731
    a, b = bandit_path(md, 1.0, means, seed=3), bandit_path(md, 1.0, means, seed=3)
    assert a.shape == (31, 3) and np.array_equal(a, b)
    assert np.allclose(a.sum(1), 1) and (a > 0).all()  # mirror descent never leaves the interior
    pg = bandit_path(projected_gradient_step, 1.0, means, seed=3)
    assert np.allclose(pg.sum(1), 1) and (pg >= 0).all() and (pg == 0).any()
