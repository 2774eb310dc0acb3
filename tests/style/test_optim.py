"""The bf16-tolerant L-BFGS: it minimises, it beats gradient descent, it survives quantisation."""

from __future__ import annotations

import torch

from impasto.style.optim import ImageLBFGS


def _quadratic(n=64, cond=100.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    a = q @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(cond)), n)) @ q.T
    b = torch.randn(n, generator=g)
    return a, b, torch.linalg.solve(a, b)


def test_minimises_an_ill_conditioned_quadratic():
    a, b, solution = _quadratic()
    x = torch.zeros(64, requires_grad=True)

    def closure():
        x.grad = None
        loss = 0.5 * x @ a @ x - b @ x
        loss.backward()
        return loss

    opt = ImageLBFGS(x, history=20, first_step=0.1)
    losses, evals = [], None
    for i in range(60):
        losses.append(opt.step(closure))
        if evals is None and torch.allclose(x.detach(), solution, atol=1e-3):
            evals, iters = opt.evaluations, i + 1
    assert evals is not None, "did not converge"
    assert all(l2 <= l1 + 1e-6 for l1, l2 in zip(losses, losses[1:]))  # monotone
    assert evals < 1.5 * iters  # about one evaluation per iteration before convergence
    assert iters < 50


def test_quantised_objective_does_not_blow_up():
    """Like a bf16 forward pass: the loss is computed from a coarsely rounded input."""
    a, b, solution = _quadratic(cond=10.0)
    x = torch.zeros(64, requires_grad=True)

    def closure():
        x.grad = None
        xq = x + (x.detach().bfloat16().float() - x.detach())  # rounded value, straight grad
        loss = 0.5 * xq @ a @ xq - b @ xq
        loss.backward()
        return loss

    opt = ImageLBFGS(x, first_step=0.01)
    for _ in range(80):
        opt.step(closure)
    assert torch.isfinite(x).all()
    assert (x.detach() - solution).abs().max() < 0.05


def test_torch_lbfgs_first_step_would_vanish():
    """Documents why ImageLBFGS exists: torch's first step is 1/sum|g|, tiny for images."""
    x = torch.zeros(3 * 128 * 128, requires_grad=True)
    target = torch.rand(x.shape)

    def closure():
        x.grad = None
        loss = ((x - target) ** 2).sum() * 1e4
        loss.backward()
        return loss

    torch_opt = torch.optim.LBFGS([x], max_iter=1)
    torch_opt.step(closure)
    assert x.detach().abs().max() < 1e-3  # below bf16's resolution on a 0-255 image
    y = torch.zeros_like(x, requires_grad=True)

    def closure_y():
        y.grad = None
        loss = ((y - target) ** 2).sum() * 1e4
        loss.backward()
        return loss

    ImageLBFGS(y, first_step=0.01).step(closure_y)
    assert y.detach().abs().max() >= 0.005


def test_bounds_keep_the_solution_in_the_box():
    """With a target outside [0, 1], the projected optimiser stops at the box, at the
    constrained minimum (the clamped target for a separable quadratic)."""
    target = torch.linspace(-0.5, 1.5, 50)
    x = torch.full((50,), 0.5, requires_grad=True)

    def closure():
        x.grad = None
        loss = ((x - target) ** 2).sum()
        loss.backward()
        return loss

    opt = ImageLBFGS(x, bounds=(0.0, 1.0), first_step=0.1)
    for _ in range(30):
        opt.step(closure)
        assert float(x.detach().min()) >= 0.0 and float(x.detach().max()) <= 1.0
    torch.testing.assert_close(x.detach(), target.clamp(0, 1), atol=1e-4, rtol=0)


def _iterations_to_solve(a, b, solution, precondition=None, history=5, limit=200):
    x = torch.zeros(len(b), requires_grad=True)

    def closure():
        x.grad = None
        loss = 0.5 * x @ a @ x - b @ x
        loss.backward()
        return loss

    opt = ImageLBFGS(x, history=history, first_step=0.1, precondition=precondition)
    for i in range(limit):
        opt.step(closure)
        if torch.allclose(x.detach(), solution, atol=1e-4):
            return i + 1, x.detach().clone()
    return None, x.detach().clone()


def test_preconditioner_is_the_initial_inverse_hessian():
    """A diagonal quadratic with condition number 1e4: with its exact inverse Hessian as the
    preconditioner L-BFGS solves it in a couple of steps; without, it needs many; the identity
    changes nothing."""
    n = 200
    d = torch.logspace(0, 4, n)
    a, b = torch.diag(d), torch.randn(n, generator=torch.Generator().manual_seed(1))
    solution = b / d
    plain, x_plain = _iterations_to_solve(a, b, solution)
    exact, _ = _iterations_to_solve(a, b, solution, precondition=lambda v: v / d)
    same, x_same = _iterations_to_solve(a, b, solution, precondition=lambda v: v.clone())
    assert exact is not None and exact <= 3
    assert plain is None or plain > 10 * exact
    assert same == plain and torch.equal(x_same, x_plain)


def test_bf16_history_still_minimises_and_halves_the_memory():
    from impasto.style.optim import ImageLBFGS

    g = torch.Generator().manual_seed(0)
    d = torch.logspace(0, 3, 256)  # condition number 1000
    b = torch.randn(256, generator=g)

    def run(dtype):
        x = torch.zeros(256, requires_grad=True)

        def closure():
            x.grad = None
            loss = 0.5 * (d * x * x).sum() - (b * x).sum()
            loss.backward()
            return loss

        opt = ImageLBFGS(x, history=10, history_dtype=dtype, first_step=0.1)
        for _ in range(60):
            opt.step(closure)
        return float(closure()), opt

    best = float(-0.5 * (b * b / d).sum())
    f32, opt32 = run(torch.float32)
    bf16, opt16 = run(torch.bfloat16)
    assert opt16.s[0].dtype == torch.bfloat16 and opt32.s[0].dtype == torch.float32
    start = 0.0  # the loss at x = 0
    # Both get within 1% of the way from the start to the minimum; bf16 about as close.
    assert f32 - best < 1e-2 * (start - best) and bf16 - best < 1e-2 * (start - best), (f32, bf16, best)
    assert bf16 - best < 3 * (f32 - best) + 1e-3, (f32, bf16, best)
