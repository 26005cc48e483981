"""The refresh throttle: the first call goes through at once, a burst collapses into one more."""

from __future__ import annotations

from llmtray.gui.throttle import Throttle


def test_leading_call_now_and_one_trailing_call_for_a_burst(qtbot):
    calls = []
    throttle = Throttle(lambda: calls.append(len(calls)), 50)
    throttle.trigger()
    assert calls == [0]  # leading edge: no waiting for the first change
    for _ in range(100):
        throttle.trigger()
    assert calls == [0]  # the burst is held back …
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=2000)  # … and delivered once
    qtbot.wait(150)
    assert len(calls) == 2  # nothing more without new triggers


def test_quiet_throttle_calls_at_once_again_and_cancel_drops_pending(qtbot):
    calls = []
    throttle = Throttle(lambda: calls.append(1), 30)
    throttle.trigger()
    qtbot.waitUntil(lambda: not throttle._timer.isActive(), timeout=2000)
    throttle.trigger()
    assert len(calls) == 2
    throttle.trigger()
    throttle.cancel()
    qtbot.wait(100)
    assert len(calls) == 2
