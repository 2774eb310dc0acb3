"""A limited-memory BFGS for image optimisation that tolerates bf16 gradients.

``torch.optim.LBFGS`` starts with a step of ``1 / sum|g|`` (on an image, a change of about
``1e-5`` per pixel), which vanishes when the network runs in bf16: the loss does not move, the
curvature pair is empty, and the next step falls back to an unscaled ``-g`` that throws the image
far out of range. Its strong-Wolfe line search instead bisects on loss differences below bf16's
resolution and ends in NaN. This optimiser keeps the classic algorithm (Nocedal & Wright 2006,
algorithm 7.4, two-loop recursion with the ``s·y / y·y`` initial Hessian) and changes only what
breaks:

* the first step, and any restart, is steepest descent scaled so the largest pixel change is
  ``first_step`` (a fixed fraction of the ``[0, 1]`` range);
* curvature pairs with ``s·y <= eps·y·y`` are skipped, and a non-descent direction restarts;
* a short backtracking (Armijo) search accepts the unit step almost always, so an iteration costs
  about one loss evaluation, as in neural-style's L-BFGS without line search;
* optional ``bounds`` project every step into a box (here the ``[0, 1]`` pixel range), so the
  optimiser cannot lower the loss with values that no image file can hold;
* an optional ``precondition`` (a symmetric positive definite operator ``P`` on flat vectors)
  replaces the initial inverse Hessian ``gamma * I`` with ``gamma * P``, ``gamma = s.y / y.Py``
  (Nocedal & Wright 2006, section 7.2). ``benchmarks/nst_optim.py`` measures a Laplacian-pyramid
  one on style transfer; it is not used by default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _identity(v: Tensor) -> Tensor:
    return v


class ImageLBFGS:
    """L-BFGS over one tensor ``x`` (updated in place).

    ``closure()`` must zero ``x.grad``, compute the loss, call ``backward()`` and return the loss.
    Each :meth:`step` is one iteration and returns the loss at the new point.
    """

    def __init__(
        self,
        x: Tensor,
        *,
        history: int = 30,
        first_step: float = 0.01,
        max_backtracks: int = 4,
        armijo: float = 1e-4,
        bounds: tuple[float, float] | None = None,
        precondition: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not x.requires_grad:
            raise ValueError("x must require grad")
        self.x = x
        self.history = history
        self.first_step = first_step
        self.max_backtracks = max_backtracks
        self.armijo = armijo
        self.bounds = bounds
        self.precondition = precondition
        self.s: list[Tensor] = []
        self.y: list[Tensor] = []
        self.rho: list[float] = []
        self.loss: float | None = None
        self.grad: Tensor | None = None
        self.evaluations = 0
        self.stalled = False  # the last step found no lower loss

    def reset(self, keep_history: bool = True) -> None:
        """Forgets the cached loss and gradient (after the objective changed), and optionally
        the curvature history."""
        self.loss, self.grad = None, None
        if not keep_history:
            self.s, self.y, self.rho = [], [], []

    def _evaluate(self, closure: Callable[[], Tensor]) -> tuple[float, Tensor]:
        with torch.enable_grad():
            loss = closure()
        self.evaluations += 1
        return float(loss), self.x.grad.detach().reshape(-1).float().clone()

    def _direction(self, g: Tensor) -> Tensor:
        P = self.precondition or _identity
        if not self.s:
            d = -P(g)
            return d * (self.first_step / d.abs().max().clamp_min(1e-30))
        q = -g.clone()
        alphas = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(self.rho)):
            a = rho * float(s @ q)
            q.add_(y, alpha=-a)
            alphas.append(a)
        gamma = float(self.s[-1] @ self.y[-1]) / float(self.y[-1] @ P(self.y[-1]))
        q = P(q).mul_(gamma)
        for s, y, rho, a in zip(self.s, self.y, self.rho, reversed(alphas)):
            b = rho * float(y @ q)
            q.add_(s, alpha=a - b)
        return q

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> float:
        if self.grad is None:
            self.loss, self.grad = self._evaluate(closure)
        loss0, g0 = self.loss, self.grad
        x0 = self.x.detach().reshape(-1).float().clone()
        free = None
        if self.bounds is not None:
            # Pixels held at a bound by a gradient that pushes them outward do not move.
            lo, hi = self.bounds
            free = ~(((x0 <= lo) & (g0 > 0)) | ((x0 >= hi) & (g0 < 0)))
        g_dir = g0 if free is None else g0 * free
        d = self._direction(g_dir)
        if free is not None:
            d = d * free
        gtd = float(g_dir @ d)
        if not gtd < 0:  # not a descent direction: forget the history
            self.s, self.y, self.rho = [], [], []
            d = self._direction(g_dir)
            gtd = float(g_dir @ d)
        if not self.x.is_contiguous():
            raise ValueError("x must be contiguous")
        flat = self.x.data.view(-1)

        t = 1.0
        best: tuple[float, Tensor, Tensor] | None = None
        for _ in range(self.max_backtracks + 1):
            trial = x0 + t * d
            if self.bounds is not None:
                # Projected step: pixels stay in range, so the loss we minimise is the loss of
                # the image a file can hold. The curvature pair uses the step actually taken.
                trial.clamp_(*self.bounds)
            flat.copy_(trial)
            loss, g = self._evaluate(closure)
            if best is None or (loss == loss and loss < best[0]):
                best = (loss, trial, g)
            predicted = min(float(g0 @ (trial - x0)), 0.0)
            if loss == loss and loss <= loss0 + self.armijo * predicted:
                break
            t *= 0.5
        assert best is not None
        loss, x1, g = best
        if not (loss == loss and loss < float("inf")) or loss > loss0:
            # No trial improved: stay put, restart from steepest descent next time.
            flat.copy_(x0)
            self.s, self.y, self.rho = [], [], []
            self.stalled = True
            return loss0
        self.stalled = False
        flat.copy_(x1)
        s, y = x1 - x0, g - g0
        ys = float(s @ y)
        if ys > 1e-10 * float(y @ y) and ys > 0:
            self.s.append(s)
            self.y.append(y)
            self.rho.append(1.0 / ys)
            if len(self.s) > self.history:
                self.s.pop(0), self.y.pop(0), self.rho.pop(0)
        self.loss, self.grad = loss, g
        return loss
