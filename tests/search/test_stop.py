"""The stop request a driver session hands out (search.engine.stop), without Ray: what each
kind of stop raises when Ray Tune returns, that Tune is asked once, and that a request belongs
to one session."""

import signal

import pytest

from search.engine.stop import DiskFull, PendingTimeout, Stopped, StopRequest


@pytest.fixture
def asked(monkeypatch):
    """SIGUSR1s sent to this process (Ray Tune's graceful stop), instead of Tune's handler."""
    sent = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: sent.append(1))
    yield sent
    signal.signal(signal.SIGUSR1, previous)


def test_a_signal_inside_tune_is_forwarded_once_and_raised_as_stopped_after_it(asked):
    stop = StopRequest()
    with pytest.raises(Stopped) as raised, stop.running_tune():
        stop.handle(signal.SIGTERM, None)  # recorded, not raised: Tune must save its state first
        assert stop.stopping and asked == []
        stop.forward_to_tune()
        stop.forward_to_tune()  # Tune's loop calls it every step
        assert asked == [1]
    assert raised.value.signum == signal.SIGTERM and raised.value.exit_code == 143
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGINT, None)  # the second signal stops at once


def test_a_signal_outside_tune_stops_at_once():
    with pytest.raises(KeyboardInterrupt):
        StopRequest().handle(signal.SIGINT, None)


def test_a_full_disk_and_a_pending_timeout_stop_tune_then_say_why(asked):
    stop = StopRequest()
    with pytest.raises(DiskFull) as raised, stop.running_tune():
        stop.disk_full("/data/exp", "No space left on device")
        stop.disk_full("/elsewhere", "later")  # the first cause is the one reported
    assert raised.value.folder == "/data/exp" and raised.value.detail == "No space left on device" and asked == [1]
    stop = StopRequest()
    with pytest.raises(PendingTimeout, match="no node fits"), stop.running_tune():
        stop.cannot_run("no node fits")
    assert asked == [1, 1]


def test_each_session_has_its_own_request(asked):
    from search.engine.session import current

    first = StopRequest()
    first.disk_full("/data/exp", "No space left on device")
    filtered = first.log_filter()
    import logging

    record = logging.LogRecord(
        "ray.tune", logging.ERROR, __file__, 1, "Saving failed: No space left on device", None, None
    )
    assert not filtered.filter(record) and first.full_logs
    second = StopRequest()
    assert not second.stopping and second.full_logs == []
    assert not current().stop.stopping  # outside a session: a request nothing triggers
