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
* the curvature pairs may be stored in a narrower ``history_dtype`` (bf16 halves their memory;
  the products are still taken in float32, and ``rho`` is that of the stored pair). At 8192 px
  one pair of image-sized vectors takes 1.6 GB in float32: :func:`history_for_budget` is the
  rule Gatys uses to fit the history to a memory budget.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _identity(v: Tensor) -> Tensor:
    return v


#: Fewest curvature pairs :func:`history_for_budget` keeps (fewer makes L-BFGS little better
#: than scaled gradient descent).
MIN_HISTORY = 3
#: The share of the memory budget the curvature pairs may take.
HISTORY_SHARE = 0.25


def history_for_budget(requested: int, numel: int, budget: int) -> tuple[int, torch.dtype]:
    """How many curvature pairs of ``numel``-element vectors to keep, and in which dtype, so
    that they take at most ``HISTORY_SHARE`` (a quarter) of ``budget`` bytes: all ``requested``
    pairs in float32 when they fit (8 bytes per element per pair); else in bf16 (4 bytes), as
    many as fit but at least ``MIN_HISTORY`` (or ``requested`` if smaller). At 512-2048 px with
    a budget of a few GB nothing changes; at 8192 px (201M elements) and a 20 GB budget: 6
    pairs in bf16 instead of 30 in float32 (48 GB)."""
    share = HISTORY_SHARE * budget
    if requested * 8 * numel <= share:
        return requested, torch.float32
    fit = int(share // (4 * numel))
    return max(min(requested, MIN_HISTORY), min(requested, fit)), torch.bfloat16


def _dot(a: Tensor, b: Tensor, chunk: int = 1 << 24) -> float:
    """``a . b`` in float32 for flat vectors of any float dtype (bf16 ones in chunks, so no
    image-sized float32 copy is made)."""
    if a.dtype == b.dtype == torch.float32:
        return float(a @ b)
    return float(sum(torch.dot(a[i:i + chunk].float(), b[i:i + chunk].float())
                     for i in range(0, a.numel(), chunk)))


class ImageLBFGS:
    """L-BFGS over one tensor ``x`` (updated in place).

    ``closure()`` must set ``x.grad`` to None (the optimiser takes the gradient tensor over
    after each evaluation instead of copying it), compute the loss, call ``backward()`` and
    return the loss. Each :meth:`step` is one iteration and returns the loss at the new point.
    ``history_dtype``: the dtype the curvature pairs are stored in (float32, or bf16 to halve
    their memory).
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
        history_dtype: torch.dtype = torch.float32,
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
        self.history_dtype = history_dtype
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
        g = self.x.grad.detach().reshape(-1).float()
        if g.data_ptr() == self.x.grad.data_ptr():
            self.x.grad = None  # ours now: no image-sized copy
        else:
            g = g.clone()
        return float(loss), g

    def _direction(self, g: Tensor) -> Tensor:
        P = self.precondition or _identity
        if not self.s:
            d = -P(g)
            return d * (self.first_step / d.abs().max().clamp_min(1e-30))
        q = -g.clone()
        alphas = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(self.rho)):
            a = rho * _dot(s, q)
            q.add_(y, alpha=-a)
            alphas.append(a)
        y_last = self.y[-1] if self.precondition is None else P(self.y[-1].float())
        gamma = _dot(self.s[-1], self.y[-1]) / _dot(self.y[-1], y_last)
        q = P(q).mul_(gamma)
        for s, y, rho, a in zip(self.s, self.y, self.rho, reversed(alphas)):
            b = rho * _dot(y, q)
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
            d.mul_(free)
        gtd = float(g_dir @ d)
        if not gtd < 0:  # not a descent direction: forget the history
            self.s, self.y, self.rho = [], [], []
            d = self._direction(g_dir)
            gtd = float(g_dir @ d)
        del g_dir, free  # image-sized: not held through the evaluations
        if not self.x.is_contiguous():
            raise ValueError("x must be contiguous")
        flat = self.x.data.view(-1)

        t = 1.0
        best: tuple[float, Tensor, Tensor] | None = None
        for _ in range(self.max_backtracks + 1):
            trial = torch.add(x0, d, alpha=t)  # t is a power of two: as x0 + t * d
            if self.bounds is not None:
                # Projected step: pixels stay in range, so the loss we minimise is the loss of
                # the image a file can hold. The curvature pair uses the step actually taken.
                trial.clamp_(*self.bounds)
            flat.copy_(trial)
            loss, g = self._evaluate(closure)
            predicted = min(float(g0 @ (trial - x0)), 0.0)
            if best is None or (loss == loss and loss < best[0]):
                best = (loss, trial, g)
            del trial, g  # image-sized: only the best trial is held
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
        del best, x1
        s = x0.neg_().add_(flat).to(self.history_dtype)  # x1 - x0, in x0's memory
        del x0
        y = torch.sub(g, g0).to(self.history_dtype)
        ys = _dot(s, y)
        if ys > 1e-10 * _dot(y, y) and ys > 0:
            self.s.append(s)
            self.y.append(y)
            self.rho.append(1.0 / ys)
            if len(self.s) > self.history:
                self.s.pop(0), self.y.pop(0), self.rho.pop(0)
        self.loss, self.grad = loss, g
        return loss
