"""The kernels chosen by ``kernel=`` (numba loaded in the background, never waited for by
``kernel="auto"``, the fallback to NumPy), the compiled kernel's rounding (no contraction in the
numpy profile) and numba's on-disk cache (from a read-only install; each variant's loop its own).
Shares ``HYPER``, ``ROOT`` and ``gradient`` with ``test_backends.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optimized
import reference
from optimized import backends
from tests.assertions import assert_same_bits
from tests.optimized.test_backends import HYPER, ROOT, gradient

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
    assert not optimizer.wait_until_compiled(timeout=1800)
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
    assert not optimizer.wait_until_compiled(timeout=0)  # still held: the steps ran on NumPy
    release.set()
    assert optimizer.wait_until_compiled(timeout=1800)
    for seed in range(3, 6):
        optimizer.step([gradient(9, seed)])
        reference_optimizer.step([gradient(9, seed)])
    assert_same_bits(theta, spec)
    assert_same_bits(optimizer.averages()[0], reference_optimizer.averages()[0])


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
    assert optimizer.wait_until_compiled(timeout=1800)
    for group in (optimizer.param_groups[0], reference_optimizer.param_groups[0]):
        group["maximize"] = True
    for seed in range(2, 5):  # the second loader is blocked: these steps did not wait for it
        optimizer.step([gradient(9, seed)])
        reference_optimizer.step([gradient(9, seed)])
    assert len(calls) == 2
    release.set()
    assert optimizer.wait_until_compiled(timeout=1800)
    optimizer.step([gradient(9, 5)])
    reference_optimizer.step([gradient(9, 5)])
    assert_same_bits(theta, spec)
    assert_same_bits(optimizer.averages()[0], reference_optimizer.averages()[0])


@pytest.mark.e2e  # runs a new interpreter
def test_importing_optimized_does_not_import_numba() -> None:
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import optimized
        optimizer = optimized.ASGD([np.zeros(3, np.float32)])
        print("numba" in sys.modules, optimizer.backend)
        optimizer.step([np.ones(3, np.float32)])
        print(optimizer.wait_until_compiled(), "numba" in sys.modules)
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


# -------------------------------------------------------------------------- numba's on-disk cache


@pytest.mark.e2e
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


@pytest.mark.e2e
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
