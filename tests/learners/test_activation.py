"""The hidden layers' tanh on the CPU (computed through sigmoid) is tanh, values and gradients."""

import torch

from fleet.learners.stacked import tanh


def test_cpu_tanh_equals_torch_tanh_to_float_rounding():
    x = torch.cat([torch.linspace(-60, 60, 200_001), torch.tensor([0.0, 1e-30, -1e-30, float("inf"), float("-inf")])])
    torch.testing.assert_close(tanh(x), torch.tanh(x), atol=2.5e-7, rtol=0)
    assert tanh(torch.tensor([60.0, -60.0])).tolist() == [1.0, -1.0]


def test_cpu_tanh_gradient_is_one_minus_tanh_squared():
    x = torch.randn(64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tanh, (x,))
    y = torch.linspace(-8, 8, 1001, requires_grad=True)
    tanh(y).sum().backward()
    torch.testing.assert_close(y.grad, 1 - torch.tanh(y.detach()) ** 2, atol=5e-7, rtol=0)
