import threading

from harness.cell.gauge import InFlightGauge
from harness.core.clock import now_ns
from harness.core.stats import sweep_peak


def test_live_and_sweep_peaks_equal_by_construction_under_contention():
    gauge = InFlightGauge(now_ns())
    intervals = []
    lock = threading.Lock()

    def work():
        for _ in range(2000):
            start, _ = gauge.enter()
            end = gauge.exit()
            with lock:
                intervals.append((start, end))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts, ends = zip(*intervals, strict=True)
    assert sweep_peak(starts, ends) == gauge.peak >= 1
    assert gauge.in_flight == 0
    assert len(set(starts) | set(ends)) == 2 * len(intervals)  # strictly increasing stamps
