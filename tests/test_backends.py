"""The step as plan → backend: the arrays resolved at every step, the kernels chosen by ``kernel=``,
the compiled kernel's rounding (no contraction in the numpy profile) and its on-disk cache."""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optimized
import reference
from optimized import backends
from tests.assertions import assert_same_bits
from tests.implementations import OPTIMIZED

ROOT = Path(__file__).resolve().parents[1]
HYPER = {"lr": 0.1, "t0": 1, "momentum": 0.5, "weight_decay": 0.01}


def both(
    asgd_class: Any, make: Callable[[Any], list[np.ndarray]]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Run the same program (``make`` builds and drives an optimizer, returning the arrays to
    compare) on ``asgd_class`` and on the reference."""
    return make(asgd_class), make(reference.ASGD)


def step_while(optimizer: Any, grads: list[np.ndarray], sample: Callable[[], Any]) -> list[Any]:
    """Step ``optimizer`` through ``grads`` while another thread calls ``sample`` again and again;
    what ``sample`` returned, in order."""
    done, samples = threading.Event(), []

    def repeat() -> None:
        while not done.is_set():
            samples.append(sample())

    other = threading.Thread(target=repeat)
    other.start()
    try:
        for g in grads:
            optimizer.step([g])
    finally:
        done.set()
        other.join()
    return samples


def gradient(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# ----------------------------------------------------------------- parameters resolved at each step


def test_a_replaced_data_array_is_the_one_updated(asgd_class: Any) -> None:
    def program(cls: Any) -> list[np.ndarray]:
        old, new = np.ones(5, np.float32), np.full(5, 2.0, np.float32)
        w = optimized.Parameter(old)
        optimizer = cls([w], **HYPER)
        w.grad = gradient(5, 0)
        optimizer.step()
        before = old.copy()
        w.data = new
        w.grad = gradient(5, 1)
        optimizer.step()
        assert_same_bits(old, before, "the replaced array is no longer touched")
        return [new, *optimizer.averages()]

    ours, spec = both(asgd_class, program)
    assert not (ours[0] == 2.0).all(), "the new array was not updated"
    for a, b in zip(ours, spec, strict=True):
        assert_same_bits(a, b)


def test_a_replaced_list_entry_and_an_appended_parameter_are_updated(asgd_class: Any) -> None:
    def program(cls: Any) -> list[np.ndarray]:
        a, b, c = np.ones(3, np.float32), np.full(3, 2.0, np.float32), np.full(4, 3.0, np.float32)
        optimizer = cls([a], **HYPER)
        optimizer.step([gradient(3, 0)])
        stepped_once = a.copy()
        optimizer.param_groups[0]["params"][0] = b
        optimizer.step([gradient(3, 1)])
        optimizer.param_groups[0]["params"].append(c)
        optimizer.step([gradient(3, 2), gradient(4, 3)])
        optimizer.step([gradient(3, 4), gradient(4, 5)])
        assert_same_bits(a, stepped_once, "the replaced array is no longer touched")
        return [b, c, *optimizer.averages()]

    ours, spec = both(asgd_class, program)
    assert not (ours[0] == 2.0).any() and not (ours[1] == 3.0).any()
    for x, y in zip(ours, spec, strict=True):
        assert_same_bits(x, y)


def test_a_replaced_array_of_another_shape_is_refused_before_anything_changes(asgd_class: Any) -> None:
    a, b = np.ones(3, np.float32), np.ones(4, np.float32)
    optimizer = asgd_class([a], **HYPER)
    optimizer.step([gradient(3, 0)])
    optimizer.param_groups[0]["params"][0] = b
    with pytest.raises(ValueError, match=r"params\[0\] has shape \(4,\).*state was made for shape \(3,\)"):
        optimizer.step([gradient(4, 1)])
    assert (b == 1).all() and optimizer.state[0].step == 1


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_a_read_only_packed_parameter_is_refused_on_the_packed_path(kernel: str) -> None:
    params = optimized.pack([np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    grads = optimized.pack([np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    optimizer = OPTIMIZED[kernel](params, **HYPER)
    optimizer.step(grads)
    before = [p.copy() for p in params], optimizer.state_dict()
    params[1].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[1\] is read-only"):
        optimizer.step(grads)
    for p, q in zip(params, before[0], strict=True):
        assert_same_bits(p, q)
    for index, entry in optimizer.state_dict()["state"].items():
        assert_same_bits(entry["ax"], before[1]["state"][index]["ax"])
        assert entry["step"] == 1


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_state_dict_from_another_thread_never_disturbs_a_step(kernel: str) -> None:
    """Averaging starts during the run; ``state_dict()`` is called in a loop from a second thread.
    Every snapshot is the state after some whole step, and the run ends as it would alone."""
    n, steps = 2_000_000, 6
    grads = [gradient(n, seed) for seed in range(steps)]
    alone = np.linspace(-1, 1, n, dtype=np.float32)
    sequential = OPTIMIZED[kernel]([alone], lr=0.01, t0=2)
    after_step = {0: None}
    for number, g in enumerate(grads, 1):
        sequential.step([g])
        after_step[number] = sequential.averages()[0]

    theta = np.linspace(-1, 1, n, dtype=np.float32)
    optimizer = OPTIMIZED[kernel]([theta], lr=0.01, t0=2)
    snapshots = step_while(optimizer, grads, optimizer.state_dict)
    assert_same_bits(theta, alone, "parameters")
    assert_same_bits(optimizer.averages()[0], sequential.averages()[0], "averages")
    assert snapshots
    for snapshot in snapshots:
        if snapshot["state"]:
            entry = snapshot["state"][0]
            assert_same_bits(entry["ax"], after_step[entry["step"]], f"snapshot at step {entry['step']}")


# ----------------------------------------------------------------------------- choosing a kernel


def test_kernel_choice_is_reported_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert optimized.ASGD([np.zeros(2)], kernel="numpy").backend == "numpy"
    assert optimized.ASGD([np.zeros(2)], kernel="numba").backend == "numba"
    assert "kernel='numba'" in repr(optimized.ASGD([np.zeros(2)]))
    monkeypatch.setattr(backends, "numba_installed", lambda: False)
    assert optimized.ASGD([np.zeros(2)]).backend == "numpy"
    with pytest.raises(ValueError, match=r"Invalid kernel: 'numba' \(numba is not installed"):
        optimized.ASGD([np.zeros(2)], kernel="numba")


def test_auto_falls_back_to_numpy_when_numba_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optimized.numba_kernel", None)  # the import raises ImportError
    theta, spec = np.linspace(-1, 1, 7), np.linspace(-1, 1, 7)
    optimizer = optimized.ASGD([theta], **HYPER)
    reference_optimizer = reference.ASGD([spec], **HYPER)
    optimizer.step([np.ones(7)])
    assert not optimizer._backend.wait_until_loaded(timeout=1800)
    with pytest.warns(RuntimeWarning, match="numba failed to load"):
        optimizer.step([np.ones(7)])
    assert optimizer.backend == "numpy"
    for _ in range(2):
        reference_optimizer.step([np.ones(7)])
    assert_same_bits(theta, spec)
    explicit = optimized.ASGD([np.zeros(2)], kernel="numba")
    with pytest.raises(ImportError):
        explicit.step([np.ones(2)])


def hold_the_loader(monkeypatch: pytest.MonkeyPatch, from_call: int) -> tuple[threading.Event, list[Any]]:
    """Make the background loader's ``from_call``-th and later loads wait for the returned event;
    the list records the variants each load was asked for."""
    release, calls = threading.Event(), []
    make = backends.NumbaBackend._make

    def held(self: backends.NumbaBackend, variants: Any) -> None:
        calls.append(variants)
        if len(calls) >= from_call:
            assert release.wait(60)
        make(self, variants)

    monkeypatch.setattr(backends.NumbaBackend, "_make", held)
    return release, calls


def test_auto_never_waits_for_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    """While numba loads in the background, steps run on the NumPy kernel, with the same bits."""
    release, _ = hold_the_loader(monkeypatch, from_call=1)
    theta, spec = np.linspace(-1, 1, 9).astype(np.float32), np.linspace(-1, 1, 9).astype(np.float32)
    optimizer = optimized.ASGD([theta], **HYPER)
    reference_optimizer = reference.ASGD([spec], **HYPER)
    for seed in range(3):  # the loader is blocked: these steps cannot have waited for it
        optimizer.step([gradient(9, seed)])
        reference_optimizer.step([gradient(9, seed)])
    assert optimizer._backend._kernel is None
    release.set()
    assert optimizer._backend.wait_until_loaded(timeout=1800)
    for seed in range(3, 6):
        optimizer.step([gradient(9, seed)])
        reference_optimizer.step([gradient(9, seed)])
    assert_same_bits(theta, spec)
    assert_same_bits(optimizer.averages()[0], reference_optimizer.averages()[0])


def test_importing_optimized_does_not_import_numba() -> None:
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import optimized
        optimizer = optimized.ASGD([np.zeros(3, np.float32)])
        print("numba" in sys.modules, optimizer.backend)
        optimizer.step([np.ones(3, np.float32)])
        print(optimizer._backend.wait_until_loaded(), "numba" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "numba", "True", "True"]


# ----------------------------------------------------------------------- the compiled kernel's bits


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_fast_profile_is_not_contracted_into_fused_multiply_adds(dtype: str) -> None:
    """Lines 3 and 6 on values where one rounding and two differ: the numba kernel in the numpy profile
    must give NumPy's two roundings, and its torch profile the single one."""
    rng = np.random.default_rng(7)
    theta = rng.uniform(-1, 1, 100_000).astype(dtype)
    grad = rng.uniform(-1, 1, 100_000).astype(dtype)
    wd, eta = float(np.float32(0.3)), float(np.float32(0.7))  # the same value in every format
    runs = {}
    for numerics in ("numpy", "torch"):
        values = theta.copy()
        optimizer = optimized.ASGD(
            [values], lr=eta, lambd=0.0, weight_decay=wd, numerics=numerics, kernel="numba"
        )
        optimizer.step([grad])
        runs[numerics] = values
    scalar = np.dtype(dtype).type
    g = grad + scalar(wd) * theta  # NumPy: multiply, then add, each rounded
    assert_same_bits(runs["numpy"], theta - scalar(eta) * g, "fast profile vs NumPy's two roundings")
    differing = np.count_nonzero(runs["numpy"] != runs["torch"])
    assert differing > 1000, f"only {differing} elements tell fused from unfused: the check could not fail"
    spec = theta[:200].copy()
    reference.ASGD([spec], lr=eta, lambd=0.0, weight_decay=wd, numerics="torch").step([grad[:200]])
    assert_same_bits(runs["torch"][:200], spec, "torch profile vs the reference's fma")


@pytest.mark.skipif(os.name != "posix", reason="uses POSIX permissions")
def test_the_numba_cache_works_from_a_read_only_install(tmp_path: Path) -> None:
    """With the package directory not writable, numba caches in the user cache directory, and a
    second process loads the compiled kernel from there instead of compiling it again."""
    site = tmp_path / "site"
    for package in ("reference", "optimized"):
        shutil.copytree(ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
        # Root ignores permissions; a file where numba wants its cache directory stops it alike.
        (site / package / "__pycache__").write_text("not a directory")
    for path in site.rglob("*"):
        path.chmod(0o444 if path.is_file() else 0o555)
    site.chmod(0o555)
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        """
        import numpy as np
        import optimized
        from optimized.numba_kernel import kernel
        optimizer = optimized.ASGD([np.zeros(8, np.float32)], lr=0.1, kernel="numba")
        optimizer.step([np.ones(8, np.float32)])
        stats = kernel("f", False, False, False, False, False, False, False).stats
        print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "XDG_CACHE_HOME": str(cache),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("NUMBA_CACHE_DIR", None)
    try:
        first = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        second = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path
        )
    finally:
        for path in [site, *site.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout.split() == ["0", "1"], "the first process compiles"
    assert second.stdout.split() == ["1", "0"], "the second loads the cached kernel"
    assert list((cache / "numba").rglob("*.nbi")), "the cache index lies in the user cache directory"
    assert not [p for p in site.rglob("*.nbi")], "nothing was written into the package"


# ------------------------------------------------------------------ clocks of packed runs cut apart


def packed_program(cls: Any, actions: list[Any]) -> list[np.ndarray]:
    """Packed parameters driven by ``actions``: a gradient row to step with, or a callable that
    changes the optimizer (and returns it, maybe a copy)."""
    rng = np.random.default_rng(3)
    params = optimized.pack([rng.standard_normal(s).astype(np.float32) for s in ((3,), (2, 2), (5,))])
    optimizer = cls(list(params), lr=0.1, t0=1, momentum=0.5)
    for action in actions:
        if callable(action):
            optimizer = action(optimizer)
        else:
            optimizer.step([None if g is None else g.copy() for g in action])
    saved = optimizer.state_dict()
    steps = [np.array(saved["state"][i]["step"]) for i in sorted(saved["state"])]
    return [*optimizer.param_groups[0]["params"], *optimizer.averages(), *steps]


def rows(*present: str) -> list[list[np.ndarray | None]]:
    rng = np.random.default_rng(4)
    shapes = ((3,), (2, 2), (5,))
    return [[rng.standard_normal(s).astype(np.float32) if flag == "g" else None for s, flag in zip(shapes, row, strict=True)]
            for row in present]  # fmt: skip


def replace_second(optimizer: Any) -> Any:
    optimizer.param_groups[0]["params"][1] = optimizer.param_groups[0]["params"][1].copy()
    return optimizer


def round_trip(optimizer: Any) -> Any:
    return pickle.loads(pickle.dumps(optimizer))


@pytest.mark.parametrize(
    "program",
    [
        rows("ggg", "-g-", "g--", "ggg", "ggg"),  # cut apart twice
        [*rows("ggg"), replace_second, *rows("g--", "ggg")],  # a packed parameter replaced
        [*rows("ggg"), round_trip, *rows("g-g", "ggg")],  # a copy, then part of the run
        [*rows("ggg", "ggg"), lambda o: (o.state.clear(), o)[1], *rows("ggg")],  # state cleared
    ],
    ids=["cut twice", "replaced", "copied", "state cleared"],
)
def test_a_packed_run_cut_apart_keeps_one_clock_per_parameter(asgd_class: Any, program: list[Any]) -> None:
    for a, b in zip(
        packed_program(asgd_class, program), packed_program(reference.ASGD, program), strict=True
    ):
        assert_same_bits(a, b)


def test_a_parameter_changed_in_place_is_looked_at_afresh(asgd_class: Any) -> None:
    """A new dtype or shape given in place no longer fits the state: refused, nothing changed;
    a kernel never sees arrays of different lengths."""
    theta = np.arange(1.0, 5.0).astype(np.complex64)
    optimizer = asgd_class([theta], lr=0.1)
    optimizer.step([np.ones(4, np.complex64)])
    before = theta.copy()
    theta.dtype = np.float64  # the same 32 bytes, now 4 float64
    with pytest.raises(
        ValueError, match=r"params\[0\] has shape \(4,\) and dtype float64, but its state was made"
    ):
        optimizer.step([np.ones(4)])
    theta.dtype = np.complex64
    assert_same_bits(theta, before)
    theta.shape = (2, 2)
    with pytest.raises(
        ValueError, match=r"params\[0\] has shape \(2, 2\) and dtype complex64, but its state"
    ):
        optimizer.step([np.ones((2, 2), np.complex64)])
    assert_same_bits(theta.reshape(-1), before)


def test_the_fast_step_counter_is_exact_beyond_2_pow_53(asgd_class: Any) -> None:
    optimizer = asgd_class([np.ones(2)], lr=0.1)
    saved = optimizer.state_dict()
    saved["state"] = {0: {"step": 2**53 + 1, "eta": 0.1, "mu": 1.0, "ax": np.ones(2)}}
    optimizer.load_state_dict(saved)
    assert optimizer.state_dict()["state"][0]["step"] == 2**53 + 1
    optimizer.step([np.ones(2)])
    assert optimizer.state_dict()["state"][0]["step"] == 2**53 + 2
    saved["state"][0]["step"] = 2**63 + 7
    optimizer.load_state_dict(saved)
    assert optimizer.state_dict()["state"][0]["step"] == 2**63 + 7


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_two_optimizers_in_two_threads_give_the_sequential_bits(kernel: str) -> None:
    n = 1_500_000
    grads = [gradient(n, seed) for seed in range(4)]

    def run(theta: np.ndarray) -> Any:
        optimizer = OPTIMIZED[kernel]([theta], lr=0.01, t0=1, momentum=0.5)
        for g in grads:
            optimizer.step([g])
        return optimizer

    alone = [np.linspace(-1, 1, n, dtype=np.float32) for _ in range(2)]
    sequential = [run(theta) for theta in alone]
    together = [np.linspace(-1, 1, n, dtype=np.float32) for _ in range(2)]
    results: list[Any] = [None, None]
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, run(together[i]))) for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(2):
        assert_same_bits(together[i], alone[i], f"optimizer {i}")
        assert_same_bits(results[i].averages()[0], sequential[i].averages()[0], f"averages {i}")


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_a_copy_from_another_thread_never_holds_half_a_step(kernel: str) -> None:
    """``copy.deepcopy`` and pickling take the lock: a copy made during the steps of another thread
    is the state after some whole step."""
    n, steps = 2_000_000, 6
    grads = [gradient(n, seed) for seed in range(steps)]
    sequential = OPTIMIZED[kernel]([np.linspace(-1, 1, n, dtype=np.float32)], lr=0.01, t0=2)
    after_step: dict[int, np.ndarray] = {}
    for number, g in enumerate(grads + grads, 1):
        sequential.step([g])
        after_step[number] = sequential.averages()[0]
    optimizer = OPTIMIZED[kernel]([np.linspace(-1, 1, n, dtype=np.float32)], lr=0.01, t0=2)
    copies = step_while(optimizer, grads, lambda: copy.deepcopy(optimizer))  # steps 1 to 6
    copies += step_while(optimizer, grads, lambda: pickle.loads(pickle.dumps(optimizer)))  # 7 to 12
    assert copies
    for twin in copies:
        if twin.state:
            assert_same_bits(
                twin.averages()[0], after_step[twin.state[0].step], f"a copy at step {twin.state[0].step}"
            )


def test_auto_never_waits_for_a_loop_a_later_step_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that needs a loop not made yet (here: maximize switched on mid-run) runs on NumPy
    while the loop is made in the background, with the same bits."""
    release, calls = hold_the_loader(monkeypatch, from_call=2)
    theta, spec = np.linspace(-1, 1, 9).astype(np.float32), np.linspace(-1, 1, 9).astype(np.float32)
    optimizer = optimized.ASGD([theta], **HYPER)
    reference_optimizer = reference.ASGD([spec], **HYPER)
    for seed in range(2):
        optimizer.step([gradient(9, seed)])
        reference_optimizer.step([gradient(9, seed)])
    assert optimizer._backend.wait_until_loaded(timeout=1800)
    for group in (optimizer.param_groups[0], reference_optimizer.param_groups[0]):
        group["maximize"] = True
    for seed in range(2, 5):  # the second loader is blocked: these steps did not wait for it
        optimizer.step([gradient(9, seed)])
        reference_optimizer.step([gradient(9, seed)])
    assert len(calls) == 2
    release.set()
    assert optimizer._backend.wait_until_loaded(timeout=1800)
    optimizer.step([gradient(9, 5)])
    reference_optimizer.step([gradient(9, 5)])
    assert_same_bits(theta, spec)
    assert_same_bits(optimizer.averages()[0], reference_optimizer.averages()[0])


CACHED_VARIANTS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from optimized.backends import NumbaBackend, NumpyBackend, _variant
    from optimized.numba_kernel import kernel
    from optimized.plan import StepScalars, Task

    def tasks(dtype, momentum, maximize, decay, fused, foreach, averaging, seed):
        rng = np.random.default_rng(seed)
        scalars = StepScalars(maximize=maximize, weight_decay=0.01 if decay else 0.0, momentum=0.9,
                              decay=0.999, eta=0.03, mu=0.25 if averaging else 1.0, fused=fused,
                              lambd=0.001 if foreach else 0.0, foreach=foreach)
        made = []
        for size in (5, 40, 333):
            theta, grad, ax, buf = (rng.standard_normal(size).astype(dtype) for _ in range(4))
            made.append(Task(theta, grad, ax, buf if momentum else None, scalars))
        return made

    choices = [(dtype, m, x, d, f, e, a) for dtype in ("float32", "float64") for m in (False, True)
               for f, e in ((False, False), (True, False), (True, True))
               for x, d, a in ((False, True, True), (True, False, e))]
    differing, hits, misses = 0, 0, 0
    for index in [int(i) for i in sys.argv[1].split(",")]:
        dtype, *flags = choices[index]
        ours, theirs = tasks(dtype, *flags, seed=index), tasks(dtype, *flags, seed=index)
        NumbaBackend(threads=1).run(ours)
        NumpyBackend(threads=1).run(theirs)
        for a, b in zip(ours, theirs):
            for name in ("theta", "ax", "buf"):
                x, y = getattr(a, name), getattr(b, name)
                differing += x is not None and x.tobytes() != y.tobytes()
        stats = kernel(*_variant(ours[0])).stats
        hits += sum(stats.cache_hits.values())
        misses += sum(stats.cache_misses.values())
    print(differing, hits, misses)
    """
)


def test_loops_from_numbas_cache_are_each_their_own_variant(tmp_path: Path) -> None:
    """Every variant's loop, compiled in one process and loaded from numba's on-disk cache in
    others (in another order, several processes at once), gives the NumPy kernel's bits: the
    cache never hands one variant's loop to another (the loops share a name and differ only in
    the constants they close over)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    count = 24  # the script's variants: 2 dtypes x momentum x 3 formulations x 2 sets of choices
    forward = ",".join(map(str, range(count)))
    backward = ",".join(map(str, reversed(range(count))))
    odd_first = ",".join(map(str, [*range(1, count, 2), *range(0, count, 2)]))

    def run(order: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", CACHED_VARIANTS_SCRIPT, order],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def result(process: subprocess.Popen[str]) -> list[int]:
        out, err = process.communicate(timeout=3600)
        assert process.returncode == 0, err
        return [int(word) for word in out.split()]

    differing, hits, misses = result(run(forward))  # compiles and fills the cache
    assert (differing, hits, misses) == (0, 0, count)
    later = [run(order) for order in (backward, odd_first)]
    for process in later:
        differing, hits, misses = result(process)
        assert (differing, hits, misses) == (0, count, 0)
