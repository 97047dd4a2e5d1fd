"""A paced backend emulates a device with a share of this core (issue #17, item 2): every run,
the first after idle as much as back to back, lasts at least its CPU time / share, and answers
exactly what the unpaced backend answers."""

from __future__ import annotations

import statistics
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cofc.errors import CofcError
from cofc.runtime.backends import open_backend
from cofc.runtime.pace import DeviceClock, arrival
from tests.helpers import run_cofc

DIM, DEPTH = 768, 48


@pytest.fixture(scope="module")
def chain_onnx(tmp_path_factory):
    """48 dense 768x768 layers with tanh: about 57 MFLOPs, a few milliseconds on one core."""
    w = np.random.default_rng(0).standard_normal((DIM, DIM)).astype(np.float32) / DIM**0.5
    nodes, name = [], "x"
    for i in range(DEPTH):
        nodes += [helper.make_node("MatMul", [name, "W"], [f"m{i}"]), helper.make_node("Tanh", [f"m{i}"], [f"h{i}"])]
        name = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, DIM])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, DIM])],
        [numpy_helper.from_array(w, "W")],
    )
    path = tmp_path_factory.mktemp("onnx") / "chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _median_ms(plain, paced, feeds, idle_s: float, runs: int = 15) -> tuple[float, float]:
    """Median single-run times of both, their runs interleaved so that both see the same machine."""
    times: dict[object, list[float]] = {plain: [], paced: []}
    for _ in range(runs):
        for engine in (plain, paced):
            time.sleep(idle_s)
            start = time.perf_counter()
            engine.run(feeds)
            times[engine].append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[plain]), statistics.median(times[paced])


@pytest.mark.parametrize("idle_s", [0.0, 0.02], ids=["back-to-back", "after-idle"])
def test_paced_run_lasts_cpu_time_over_share(chain_onnx, idle_s):
    feeds = {"x": np.ones((1, DIM), np.float32)}
    with (
        open_backend("onnxruntime", chain_onnx) as plain,
        open_backend("onnxruntime", chain_onnx, cpu_share=0.25) as paced,
    ):
        plain.run(feeds), paced.run(feeds)
        full, slowed = _median_ms(plain, paced, feeds, idle_s)
        np.testing.assert_array_equal(paced.run(feeds)[f"h{DEPTH - 1}"], plain.run(feeds)[f"h{DEPTH - 1}"])
        assert paced.inputs == plain.inputs and paced.outputs == plain.outputs
    # A quarter of a core: 4x (a cgroup quota gives ~1x after idle at these lengths); at least 3x
    # leaves room for full-speed runs that were themselves disturbed.
    assert slowed > 3 * full, (full, slowed)


@pytest.mark.parametrize("share, threads", [(0.0, 1), (1.5, 1), (0.5, 2)])
def test_impossible_pacing_is_refused(chain_onnx, share, threads):
    with pytest.raises(CofcError, match="cpu share"):
        open_backend("onnxruntime", chain_onnx, threads=threads, cpu_share=share)


def test_closing_a_paced_backend_closes_its_engine(chain_onnx):
    paced = open_backend("onnxruntime", chain_onnx, cpu_share=0.5)
    paced.close()
    assert paced.inner.closed


def _burn(cpu_s: float) -> float:
    """Spin for `cpu_s` of this thread's CPU; the CPU it really took (a little more, and on a busy
    runner now and then a lot more)."""
    start = time.thread_time()
    while time.thread_time() - start < cpu_s:
        pass
    return time.thread_time() - start


# The schedule (`due`) counts CPU time only, so it is asserted against the CPU the steps really
# took, to within the clock's own bookkeeping (microseconds, times 4 at a quarter core), far
# tighter than the 3 ms a wrong schedule would add; the wall clock only from below, since a busy
# machine (a CI runner beside a build) can always be later, never earlier.
SLACK_S = 0.0003


def test_a_wait_before_the_request_is_read_is_absorbed_by_the_devices_pace():
    """A device of a quarter core that received a request 3 ms ago and spends 2 ms of CPU on it
    finishes 8 ms after it arrived, 5 from now, not 8 from now; one that received it 20 ms ago
    has no pace left to absorb the wait and finishes as soon as it really does."""
    start = time.monotonic()
    clock = DeviceClock(0.25, arrived=start - 0.003)
    with clock.step():
        cpu = _burn(0.002)
    assert cpu >= 0.002
    assert abs(clock.due - (start - 0.003 + cpu / 0.25)) < SLACK_S  # from now: 5 (wrong: 8)
    assert clock.wait() >= clock.due and time.monotonic() >= clock.due

    start = time.monotonic()
    late = DeviceClock(0.25, arrived=start - 0.020)
    with late.step():
        _burn(0.002)
    assert late.due < start  # 8 ms after it arrived, 12 ms ago
    before = time.monotonic()
    done = late.wait()
    assert before <= done <= time.monotonic()  # the moment it really finished, not its past due time


def test_a_wait_inside_one_step_is_absorbed_by_the_whole_requests_pace():
    """Preprocessing kept waiting 3 ms for a core, then 0.5 ms of CPU, then 1 ms of compute, at a
    quarter core: the device is due 2 + 4 ms after the request arrived, as if it had never waited
    (counting the compute from the late preprocessing's end would make it 7.5)."""
    start = time.monotonic()
    clock = DeviceClock(0.25, arrived=start)
    with clock.step():
        before = time.thread_time()
        time.sleep(0.003)  # the sleep's own system call takes some CPU too, counted as the clock does
        _burn(0.0005)
        cpu = time.thread_time() - before
    with clock.step():
        cpu += _burn(0.001)
    assert cpu >= 0.0015
    assert abs(clock.due - (start + cpu / 0.25)) < SLACK_S  # 6 ms (wrong: 7.5)
    assert clock.wait() >= clock.due and time.monotonic() >= clock.due


def test_a_shared_clock_adds_the_requests_transfer_and_refuses_another_hosts_clock():
    sent = time.monotonic()
    assert arrival(sent, 125_000, 1.0) == pytest.approx(sent + 1.0)  # 1 Mbit over 1 Mb/s
    with pytest.raises(CofcError, match="--emulated-link-mbps emulates a device on central's own host"):
        arrival(sent - 3600.0, 1000, 50.0)


@pytest.mark.parametrize(
    "device, options",
    [("orin", ["--cpu-share", "0.5", "--emulated-link-mbps", "10"]), ("tx2", ["--emulated-link-mbps", "10"])],
)
def test_cofc_run_refuses_a_shared_clock_it_cannot_use(device, options, built):
    """Only a paced worker counts from central's send time: central has no request to count from,
    and without a share there is no pace to absorb a wait."""
    result = run_cofc("run", "--bundle", str(built / "bundle" / device), *options)
    assert result.returncode == 2 and "--emulated-link-mbps is for a worker run with --cpu-share" in result.stderr
