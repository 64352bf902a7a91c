"""The production ASGD: the shared API of :mod:`reference.optimizer` over the blocked kernel."""

from __future__ import annotations

import bisect
import itertools
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from optimized.kernel import DEFAULT_THREADS, StepScalars, Task, run_tasks
from optimized.packing import Packed
from optimized.segments import Segment, build_segments, real_view
from reference.numerics import Numerics, numerics_named
from reference.optimizer import ASGDOptimizer, StepWork
from reference.parameters import data_of
from reference.state import Clock, ParameterState

__all__ = ["ASGD"]


class ASGD(ASGDOptimizer):
    """Averaged SGD (torch's algorithm plus heavy-ball momentum), vectorized with NumPy, in place.

    Same API and same bits as :class:`reference.ASGD` in each numerics profile: ``"fast"``
    (NumPy's rounding, exact step counter) or ``"torch"`` (torch 2.13's CPU for-loop ASGD).

    Parameters that tile one buffer (see :func:`optimized.pack`) are updated as one flat array.
    ``block_size`` (elements per block; by default 1 MiB of each array) and ``threads`` tune the
    kernel and never change a bit of the result.
    """

    _segments: list[Segment]

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        alpha: float = 0.75,
        t0: float = 1e6,
        lambd: float = 1e-4,
        maximize: bool = False,
        numerics: str = "fast",
        *,
        block_size: int | None = None,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        if block_size is not None and (
            isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
        ):
            raise ValueError(f"Invalid block_size: {block_size!r} (must be None or an integer >= 1)")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"Invalid threads: {threads!r} (must be an integer >= 1)")
        self.block_size, self.threads = block_size, threads
        self._segments = []
        self._fast_gradients: tuple[weakref.ref[Packed], bool] | None = None
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            alpha=alpha,
            t0=t0,
            lambd=lambd,
            maximize=maximize,
            numerics=numerics,
        )
        super().__init__(params, defaults)
        self._segments = self._build_all_segments()

    # ------------------------------------------------------------------------------- segments

    def _build_all_segments(self) -> list[Segment]:
        segments: list[Segment] = []
        for group, indices in self._indexed_groups():
            segments += build_segments(group["params"], indices[0] if indices else 0)
        return segments

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        first = len(self._parameters())
        super().add_param_group(param_group)
        self._segments += build_segments(self.param_groups[-1]["params"], first)
        self._fast_gradients = None

    @property
    def state(self) -> dict[int, ParameterState]:
        """Per-parameter state (views of the segments' buffers), with lazy averages made real."""
        self._materialize_averages()
        return self._state

    @state.setter
    def state(self, value: dict[int, ParameterState]) -> None:
        self._state = value

    def _materialize_averages(self) -> None:
        lazy = [segment for segment in self._segments if segment.ax_is_theta]
        if not lazy:
            return
        parameters = self._parameters()
        for segment in lazy:
            for index in segment.indices:
                np.copyto(self._state[index].ax, data_of(parameters[index]))
            segment.ax_is_theta = False

    def _start(self, segment: Segment, lr: float, numerics: Numerics) -> None:
        """The state of a segment's first step: one clock, zeroed flat buffers."""
        segment.clock = Clock.initial(lr, numerics)
        segment.ax = np.zeros_like(segment.theta)
        self._state.update(segment.states())

    def _adopt_loaded_states(self) -> None:
        """Move per-parameter states (as ``load_state_dict`` parsed them) into the segments."""
        adopted: list[Segment] = []
        for segment in self._segments:
            states = [self._state.get(index) for index in segment.indices]
            clocks = {None if s is None else (s.step, s.eta, s.mu) for s in states}
            buffers = {s is not None and s.momentum_buffer is not None for s in states}
            pieces = [segment] if len(clocks) == 1 and len(buffers) == 1 else segment.split()
            for piece in pieces:
                piece_states = [self._state.get(index) for index in piece.indices]
                first = piece_states[0]
                piece.ax_is_theta = False
                if first is None:
                    piece.clock, piece.ax, piece.buf = None, None, None
                    continue
                piece.clock = Clock(first.step, first.eta, first.mu)
                piece.ax = np.empty_like(piece.theta)
                piece.buf = None if first.momentum_buffer is None else np.empty_like(piece.theta)
                for position, state in enumerate(piece_states):
                    assert state is not None
                    np.copyto(piece.parameter_view(piece.ax, position), state.ax)
                    if piece.buf is not None and state.momentum_buffer is not None:
                        np.copyto(piece.parameter_view(piece.buf, position), state.momentum_buffer)
                self._state.update(piece.states())
            adopted += pieces
        self._segments = adopted

    def _split(self, segment: Segment) -> list[Segment]:
        """One segment per parameter (some stepped without the others), each with its own clock."""
        pieces = segment.split()
        for piece in pieces:
            if piece.clock is not None:
                self._state.update(piece.states())
        return pieces

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._adopt_loaded_states()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and deep-copied without segments (their views would become copies); the
        per-parameter states carry everything, and ``__setstate__`` rebuilds the segments."""
        self._materialize_averages()
        state = dict(self.__dict__)
        state["_segments"], state["_fast_gradients"] = [], None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._segments = self._build_all_segments()
        self._adopt_loaded_states()

    # ----------------------------------------------------------------------------------- step

    def step(
        self,
        grads: Sequence[np.ndarray | None] | None = None,
        *,
        closure: Any = None,
    ) -> Any:
        loss = closure() if closure is not None else None
        self._scalar_cache: dict[tuple[Any, ...], tuple[tuple[int | float, float, float], StepScalars]] = {}
        if isinstance(grads, Packed) and self._packed_gradients_fit(grads):
            self._step_packed(grads)
        else:
            self._apply(self._checked_work(grads))
        return loss

    def _packed_gradients_fit(self, grads: Packed) -> bool:
        """Whether ``grads`` is an intact pack laid out exactly as the parameters (checked once)."""
        if not grads.intact():
            return False
        if self._fast_gradients is not None and self._fast_gradients[0]() is grads:
            return self._fast_gradients[1]
        arrays = [data_of(p) for p in self._parameters()]
        fits = len(arrays) == len(grads) and all(
            a.shape == g.shape and a.dtype == g.dtype for a, g in zip(arrays, grads, strict=False)
        )
        self._fast_gradients = (weakref.ref(grads), fits)
        return fits

    def _step_packed(self, grads: Packed) -> None:
        """A step whose gradients tile one buffer like the parameters: no per-array work."""
        work = []
        for group_index, group in enumerate(self.param_groups):
            hyperparameters = self._checked_hyperparameters(group, f"param_groups[{group_index}]")
            work.append((hyperparameters, numerics_named(hyperparameters["numerics"])))
        group_of = self._group_of_segment_start()
        for segment in self._segments:
            _, numerics = work[group_of[segment.indices[0]]]
            if segment.dtype.name not in numerics.dtypes:
                raise TypeError(
                    f"params[{segment.indices[0]}] has dtype {segment.dtype.name}; "
                    f"supported dtypes: {', '.join(numerics.dtypes)}"
                )
        flat = real_view(grads.buffer)
        scale = 2 if np.iscomplexobj(grads.buffer) else 1
        steps = []
        for segment in self._segments:
            hyperparameters, numerics = work[group_of[segment.indices[0]]]
            start = grads.offsets[segment.indices[0]] * scale
            steps.append((segment, flat[start : start + segment.size], hyperparameters, numerics))
        self._run(steps)

    def _group_of_segment_start(self) -> dict[int, int]:
        """The group of each segment's first parameter (segments never cross groups)."""
        group_starts = list(itertools.accumulate((len(g["params"]) for g in self.param_groups), initial=0))
        return {
            segment.indices[0]: bisect.bisect_right(group_starts, segment.indices[0]) - 1
            for segment in self._segments
        }

    def _apply(self, work: list[StepWork]) -> None:
        gradients: dict[int, np.ndarray | None] = {}
        settings: dict[int, StepWork] = {}
        for item in work:
            for index, gradient in item.gradients:
                gradients[index] = gradient
                settings[index] = item
        segments: list[Segment] = []
        for segment in self._segments:
            present = [gradients[index] is not None for index in segment.indices]
            segments += self._split(segment) if any(present) and not all(present) else [segment]
        self._segments = segments
        steps = []
        for segment in segments:
            first = segment.indices[0]
            if gradients[first] is not None:
                item = settings[first]
                steps.append(
                    (segment, self._flat_gradient(segment, gradients), item.hyperparameters, item.numerics)
                )
        self._run(steps)

    def _flat_gradient(self, segment: Segment, gradients: dict[int, np.ndarray | None]) -> np.ndarray:
        """The segment's gradients as one flat real array: a view where possible, else gathered
        into a buffer kept for the next step."""
        if len(segment.indices) == 1:
            gradient = gradients[segment.indices[0]]
            assert gradient is not None
            if gradient.flags.c_contiguous:
                return real_view(gradient.reshape(-1))
        if segment.gradient_buffer is None:
            segment.gradient_buffer = np.empty_like(segment.theta)
        for position, index in enumerate(segment.indices):
            gradient = gradients[index]
            assert gradient is not None
            np.copyto(segment.parameter_view(segment.gradient_buffer, position), gradient)
        return segment.gradient_buffer

    def _scalars(
        self, clock: Clock, dtype: np.dtype[Any], hyperparameters: Mapping[str, Any], numerics: Numerics
    ) -> tuple[tuple[int | float, float, float], StepScalars]:
        """Lines 1 and 8 and the step's coefficients for a clock. They are the same for every
        segment of a group that steps in lockstep, so they are computed once per step (the
        group's hyperparameters are one dict for the whole step, hence keyed by identity)."""
        key = (clock.step, clock.eta, clock.mu, dtype, id(hyperparameters), numerics.name)
        cached = self._scalar_cache.get(key)
        if cached is None:
            h = hyperparameters
            step = numerics.increment(clock.step)  # 1
            k = StepScalars.for_dtype(dtype, dict(h), clock.eta, clock.mu, numerics.fused_multiply_add)
            eta, mu = numerics.schedule(step, lr=h["lr"], lambd=h["lambd"], alpha=h["alpha"], t0=h["t0"])  # 8
            cached = self._scalar_cache[key] = ((step, eta, mu), k)
        return cached

    def _run(self, steps: Sequence[tuple[Segment, np.ndarray, Mapping[str, Any], Numerics]]) -> None:
        """One step of each ``(segment, flat gradient, hyperparameters, profile)``: lines 1 and 8 per
        segment here, lines 2 to 7 for all of them together in the kernel."""
        tasks, finish = [], []
        for segment, gradient, hyperparameters, numerics in steps:
            if segment.clock is None:
                self._start(segment, hyperparameters["lr"], numerics)
            clock, theta = segment.clock, segment.theta
            assert clock is not None and segment.ax is not None
            next_clock, k = self._scalars(clock, theta.dtype, hyperparameters, numerics)
            first_momentum_step = k.has_momentum and segment.buf is None
            if first_momentum_step:
                segment.buf = np.zeros_like(theta)
                self._state.update(segment.states())
            if segment.gathered is not None:
                np.copyto(segment.parameter_view(theta, 0), segment.gathered)
            averaging = k.averaging
            tasks.append(
                Task(
                    theta,
                    gradient,
                    segment.ax if averaging else None,
                    segment.buf,
                    k,
                    first_momentum_step,
                    averaging and segment.ax_is_theta,
                )
            )
            finish.append((segment, clock, next_clock, not averaging))
        run_tasks(tasks, block_size=self.block_size, threads=self.threads)  # 2 to 7
        for segment, clock, next_clock, ax_is_theta in finish:
            segment.ax_is_theta = ax_is_theta
            if segment.gathered is not None:
                np.copyto(segment.gathered, segment.parameter_view(segment.theta, 0))
            clock.step, clock.eta, clock.mu = next_clock
