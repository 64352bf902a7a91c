"""The production optimizer's freedoms change no bit: kernel, block size, threads, packing.
And a steady step allocates nothing proportional to the model, on every kernel."""

from __future__ import annotations

import itertools
import threading
import tracemalloc

import numpy as np
import pytest

import optimized
import reference
from optimized import threads as threading_of_steps
from optimized.plan import StepScalars, Task
from tests.assertions import assert_same_bits
from tests.streams import Problem

SHAPES = ((40, 50), (7,), (3, 3, 3), (1000,), ())
KERNELS = ["numba", "numpy"]


def run(
    params: list[np.ndarray], problem: Problem, grads_of: object = None, **options: object
) -> optimized.ASGD:
    optimizer = optimized.ASGD(
        params, **{"lr": 0.02, "t0": 5, "momentum": 0.9, "weight_decay": 0.01, **options}
    )
    for row in problem.gradients():
        optimizer.step(row if grads_of is None else grads_of(row))  # type: ignore[operator]
    return optimizer


def end_to_end(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether ``b`` starts where ``a`` ends, in the same buffer (both ``None`` counts too)."""
    if a is None or b is None:
        return a is b

    def owner(array: np.ndarray) -> np.ndarray:
        while isinstance(array.base, np.ndarray):
            array = array.base
        return array

    start_a, start_b = a.__array_interface__["data"][0], b.__array_interface__["data"][0]
    contiguous = a.flags.c_contiguous and b.flags.c_contiguous
    return contiguous and owner(a) is owner(b) and start_b == start_a + a.nbytes


def flat_ranges(optimizer: optimized.ASGD) -> int:
    """The ranges the optimizer steps its parameters in, read from its public ``state``: consecutive
    parameters whose states share one clock and whose averages and momentum buffers lie end to end
    in one buffer (as the parameters of ``optimized.pack`` do) are stepped as one flat range."""
    states = [optimizer.state[index] for index in sorted(optimizer.state)]
    joined = [
        a.clock is b.clock and end_to_end(a.ax, b.ax) and end_to_end(a.momentum_buffer, b.momentum_buffer)
        for a, b in itertools.pairwise(states)
    ]
    return len(states) - sum(joined)


@pytest.mark.parametrize("numerics", ["numpy", "torch", "torch-foreach"])
def test_kernel_block_size_and_thread_count_change_no_bit(numerics: str) -> None:
    problem = Problem("blocks", "float32", SHAPES, steps=12)
    baseline_params = problem.initial_parameters()
    baseline = run(baseline_params, problem, numerics=numerics, threads=1, kernel="numpy")
    for kernel in KERNELS:
        for block_size, threads in [(3, 1), (7, 2), (1000, 2), (4096, 2), (1 << 20, 2), (64, 3), (None, 2)]:
            params = problem.initial_parameters()
            other = run(
                params, problem, numerics=numerics, block_size=block_size, threads=threads, kernel=kernel
            )
            where = f"kernel {kernel}, block {block_size}, threads {threads}"
            for a, b in zip(params, baseline_params, strict=True):
                assert_same_bits(a, b, where)
            for a, b in zip(other.averages(), baseline.averages(), strict=True):
                assert_same_bits(a, b, f"average, {where}")


def test_a_large_step_is_shared_out_in_equal_bytes() -> None:
    """Above the per-thread minimum, the ranges are cut into equal shares at cache-line
    boundaries, and each share runs on its own thread."""
    scalars = StepScalars(False, 0.0, 0.0, 1.0, 0.1, 1.0, False)
    arrays = [np.zeros(n, np.float32) for n in (600_000, 5)]
    tasks = [Task(a, a, a.copy(), None, scalars) for a in arrays]
    one = threading_of_steps.shares(tasks, 1)
    assert [[(start, stop) for _, start, stop in share] for share in one] == [[(0, 600_000), (0, 5)]]
    two = threading_of_steps.shares(tasks, 2)
    assert [[(task.theta.size, start, stop) for task, start, stop in share] for share in two] == [
        [(600_000, 0, 300_000)],
        [(600_000, 300_000, 600_000), (5, 0, 5)],
    ]
    small = threading_of_steps.shares(tasks[1:], 2)  # below the minimum: one share
    assert len(small) == 1


@pytest.mark.parametrize("kernel", KERNELS)
def test_two_threads_take_one_share_each(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    idents: list[int] = []
    run_shared = threading_of_steps.run_shared

    def recording(run_share: object, tasks: list[Task], threads: int) -> None:
        def share_runner(share: list[threading_of_steps.Piece]) -> None:
            idents.append(threading.get_ident())
            run_share(share)  # type: ignore[operator]

        run_shared(share_runner, tasks, threads)

    from optimized import backends, numpy_kernel

    monkeypatch.setattr(backends, "run_shared", recording)
    monkeypatch.setattr(numpy_kernel, "run_shared", recording)
    problem = Problem("large", "float32", ((600_000,), (5,)), steps=3)
    one, two = problem.initial_parameters(), problem.initial_parameters()
    run(one, problem, threads=1, kernel=kernel)
    assert len(idents) == 3
    idents.clear()
    run(two, problem, threads=2, kernel=kernel)
    assert len(idents) == 6 and len(set(idents)) == 2
    for a, b in zip(one, two, strict=True):
        assert_same_bits(a, b)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("numerics", ["numpy", "torch", "torch-foreach"])
def test_packed_parameters_match_separate_ones_and_the_reference(numerics: str, kernel: str) -> None:
    problem = Problem("packed", "float32", ((4, 5), (3,), (2, 2, 2), ()), steps=15)
    separate = problem.initial_parameters()
    assert flat_ranges(run(separate, problem, numerics=numerics, kernel=kernel)) == len(separate)
    packed = optimized.pack(problem.initial_parameters())
    optimizer = run(packed, problem, grads_of=optimized.pack, numerics=numerics, kernel=kernel)
    assert flat_ranges(optimizer) == 1  # one flat range
    spec = problem.initial_parameters()
    reference_optimizer = reference.ASGD(
        spec, lr=0.02, t0=5, momentum=0.9, weight_decay=0.01, numerics=numerics
    )
    for row in problem.gradients():
        reference_optimizer.step(row)
    for a, b, c in zip(packed, separate, spec, strict=True):
        assert_same_bits(a, b, "packed vs separate")
        assert_same_bits(a, c, "packed vs reference")
    for a, b in zip(optimizer.averages(), reference_optimizer.averages(), strict=True):
        assert_same_bits(a, b, "averages")


@pytest.mark.parametrize("kernel", KERNELS)
def test_packed_gradients_step_each_group_with_its_own_hyperparameters(kernel: str) -> None:
    """One packed buffer shared by two groups: the packed-gradient path finds each segment's group."""
    problem = Problem("groups", "float32", ((4, 5), (3,), (2, 2, 2), (6,)), steps=8)
    packed = optimized.pack(problem.initial_parameters())
    groups = [
        {"params": packed[:2]},
        {"params": packed[2:], "lr": 0.5, "weight_decay": 0.0, "maximize": True},
    ]
    optimizer = optimized.ASGD(groups, lr=0.02, t0=3, weight_decay=0.01, kernel=kernel)
    spec = problem.initial_parameters()
    spec_groups = [
        {"params": spec[:2]},
        {"params": spec[2:], "lr": 0.5, "weight_decay": 0.0, "maximize": True},
    ]
    reference_optimizer = reference.ASGD(spec_groups, lr=0.02, t0=3, weight_decay=0.01)
    for row in problem.gradients():
        optimizer.step(optimized.pack(row))
        reference_optimizer.step(row)
    for a, b in zip(packed, spec, strict=True):
        assert_same_bits(a, b, "packed groups vs reference")
    assert flat_ranges(optimizer) == 2


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_missing_gradient_splits_a_packed_range_and_keeps_the_bits(kernel: str) -> None:
    problem = Problem("split", "complex64", ((3, 2), (4,), (5,)), steps=12, skip_every=4)
    packed = optimized.pack(problem.initial_parameters())
    optimizer = optimized.ASGD(packed, lr=0.05, t0=2, momentum=0.5, kernel=kernel)
    spec = problem.initial_parameters()
    reference_optimizer = reference.ASGD(spec, lr=0.05, t0=2, momentum=0.5)
    for row in problem.gradients():
        optimizer.step(row)
        reference_optimizer.step(row)
        for a, b in zip(packed, spec, strict=True):
            assert_same_bits(a, b)
    # a packed run cut apart stays apart: each parameter has its own clock from then on
    assert flat_ranges(optimizer) == 3
    saved, expected = optimizer.state_dict(), reference_optimizer.state_dict()
    assert [saved["state"][i]["step"] for i in range(3)] == [expected["state"][i]["step"] for i in range(3)]
    assert saved["state"][0]["step"] < saved["state"][1]["step"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_packed_state_dict_round_trip_and_deepcopy(kernel: str) -> None:
    import copy

    problem = Problem("resume", "float64", ((6,), (2, 3), (4,)), steps=10)
    packed = optimized.pack(problem.initial_parameters())
    optimizer = optimized.ASGD(packed, lr=0.05, t0=3, momentum=0.9, kernel=kernel)
    grads = problem.gradients()
    for row in grads[:5]:
        optimizer.step(optimized.pack(row))
    twin = copy.deepcopy(optimizer)
    resumed_params = optimized.pack([p.copy() for p in packed])
    resumed = optimized.ASGD(resumed_params, kernel=kernel)
    resumed.load_state_dict(optimizer.state_dict())
    for row in grads[5:]:
        optimizer.step(optimized.pack(row))
        twin.step(optimized.pack(row))
        resumed.step(optimized.pack(row))
    assert flat_ranges(resumed) == 1  # loaded states re-shared
    for a, b, c in zip(packed, resumed_params, twin.param_groups[0]["params"], strict=True):
        assert_same_bits(a, b)
        assert_same_bits(a, c)


def test_pack_keeps_values_and_shapes_and_refuses_mixed_dtypes() -> None:
    arrays = [np.arange(6.0).reshape(2, 3), np.array(5.0), np.ones(4)]
    packed = optimized.pack(arrays)
    assert [p.shape for p in packed] == [(2, 3), (), (4,)]
    assert all(np.shares_memory(p, packed.buffer) for p in packed)
    for p, a in zip(packed, arrays, strict=True):
        assert_same_bits(p, a)
    assert packed.intact()
    packed[1] = np.array(5.0)
    assert not packed.intact()
    with pytest.raises(TypeError, match="pack needs arrays of one dtype"):
        optimized.pack([np.zeros(2, np.float32), np.zeros(2, np.float64)])
    with pytest.raises(ValueError, match="pack needs at least one array"):
        optimized.pack([])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("numerics", ["numpy", "torch", "torch-foreach"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_steady_steps_allocate_nothing_proportional_to_the_model(
    dtype: str, numerics: str, kernel: str
) -> None:
    """32 MiB of parameters, momentum and averaging on: the traced peak of steady steps stays
    under 2 MiB (the per-thread block workspaces are made on the first steps)."""
    # with the strided 1000 x 1000 parameter: 8,388,608 float32 or 4,194,304 float64 = 32 MiB
    sizes = [2_000_000, 3_000_000, 2_388_608] if dtype == "float32" else [1_000_000, 1_000_000, 1_194_304]
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    grads = [rng.standard_normal(n).astype(dtype) for n in sizes]
    grads.append(rng.standard_normal((1000, 1000)).astype(dtype))
    strided = rng.standard_normal((1000, 2000)).astype(dtype)[:, ::2]  # not contiguous
    assert sum(p.nbytes for p in params) + strided.nbytes == 32 * 2**20
    optimizer = optimized.ASGD(
        [*params, strided], lr=1e-3, t0=1, momentum=0.9, weight_decay=1e-4, numerics=numerics, kernel=kernel
    )
    for _ in range(4):  # averaging starts at step 4 (t0 = 1): every kernel variant is made by then
        optimizer.step(grads)
    tracemalloc.start()
    try:
        for _ in range(3):
            optimizer.step(grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20, f"{kernel} {dtype} {numerics}: traced peak {peak / 2**20:.2f} MiB"


def test_kernel_options_are_validated() -> None:
    with pytest.raises(ValueError, match=r"Invalid block_size: 0 \(must be None or an integer >= 1\)"):
        optimized.ASGD([np.zeros(2)], block_size=0)
    with pytest.raises(ValueError, match=r"Invalid threads: 1.5"):
        optimized.ASGD([np.zeros(2)], threads=1.5)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"Invalid kernel: 'cuda' \(must be one of \('auto', 'numba', 'numpy'\)\)"
    ):
        optimized.ASGD([np.zeros(2)], kernel="cuda")
