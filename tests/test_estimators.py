import math

import torch

from kimi_mini.estimators import kl_estimates
from kimi_mini.mirror import kl
from kimi_mini.train import kl_k3


def _pair(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(torch.randn(n, generator=g, dtype=torch.float64), 0)
    p = torch.softmax(torch.randn(n, generator=g, dtype=torch.float64), 0)
    return q, p


def test_k1_and_k3_are_unbiased_for_kl_q_p_and_k2_is_not():
    for seed in range(5):
        q, p = _pair(seed)
        exact = kl(q.numpy(), p.numpy())
        k1, k2, k3 = (float((q * k).sum()) for k in kl_estimates(torch.log(p) - torch.log(q)))
        assert math.isclose(k1, exact, rel_tol=1e-12) and math.isclose(k3, exact, rel_tol=1e-12)
        assert abs(k2 - exact) > 1e-4  # biased


def test_k2_and_k3_are_never_negative_and_zero_at_equal_policies():
    log_ratio = torch.linspace(-8, 8, 161, dtype=torch.float64)
    est = kl_estimates(log_ratio)
    assert (est.k2 >= 0).all() and (est.k3 >= 0).all() and (est.k1 < 0).any()
    assert all(float(k) == 0.0 for k in kl_estimates(torch.zeros(1)))


def test_schulmans_gaussian_table_is_reproduced():
    """q = N(0, 1), p = N(0.1, 1): KL = 0.005; k2's bias is 0.2% and k2, k3 have std/KL about 1.42, k1 about 20."""
    x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # x ~ q
    log_ratio = -((x - 0.1) ** 2) / 2 + x**2 / 2  # log p(x) - log q(x)
    true_kl = 0.005
    std = [float(k.std()) / true_kl for k in kl_estimates(log_ratio)]
    assert abs(std[0] - 20) < 0.2 and abs(std[1] - 1.42) < 0.02 and abs(std[2] - 1.42) < 0.02


def test_train_logs_the_same_k3():
    log_ratio = torch.linspace(-5, 5, 101)
    assert torch.equal(kl_k3(log_ratio), torch.exp(log_ratio) - 1 - log_ratio)
