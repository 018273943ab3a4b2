"""scenedino_ros.faults without ROS: failure kinds, failures in a row, the running-frame watch (fake clocks)."""
import pytest
import torch

from scenedino_ros.faults import (
    ERROR,
    OUT_OF_MEMORY,
    FailureTracker,
    FrameWatch,
    describe,
    failure_kind,
    release_device_memory,
)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.mark.parametrize('exc, kind', [
    (torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB'), OUT_OF_MEMORY),
    (MemoryError(), OUT_OF_MEMORY),
    (RuntimeError('[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can\'t allocate memory: you tried to '
                  'allocate 68719476736 bytes'), OUT_OF_MEMORY),
    (RuntimeError('MPS backend out of memory'), OUT_OF_MEMORY),
    (RuntimeError('mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)'), ERROR),
    (ValueError('out of memory'), ERROR),  # only allocator errors (RuntimeError) are read by their message
    (KeyError('x'), ERROR),
], ids=['torch_oom', 'memory_error', 'cpu_allocator', 'mps', 'runtime_error', 'value_error', 'key_error'])
def test_failure_kind(exc, kind):
    assert failure_kind(exc) == kind


def test_cuda_oom_is_the_torch_oom_type():
    assert issubclass(torch.cuda.OutOfMemoryError, torch.OutOfMemoryError)
    assert failure_kind(torch.cuda.OutOfMemoryError('x')) == OUT_OF_MEMORY


def test_describe_is_one_bounded_line():
    assert describe(RuntimeError('a\n  b')) == 'RuntimeError: a b'
    text = describe(RuntimeError('x' * 1000), limit=50)
    assert len(text) == 50 and text.endswith('...')


def test_tracker_counts_runs_and_escalates():
    clock = Clock()
    t = FailureTracker(max_consecutive=3, clock=clock)
    assert t.seconds_since_last() is None and t.last is None
    r = t.failed(RuntimeError('boom'))
    assert (r.kind, r.consecutive, r.total, r.escalate) == (ERROR, 1, 1, False)
    assert r.text == 'RuntimeError: boom'
    assert t.succeeded() == 1 and t.consecutive == 0
    assert t.succeeded() == 0
    reports = [t.failed(torch.OutOfMemoryError('oom')) for _ in range(4)]
    assert [r.consecutive for r in reports] == [1, 2, 3, 4]
    assert [r.escalate for r in reports] == [False, False, True, True]
    assert reports[-1].kind == OUT_OF_MEMORY and t.total == 5
    clock.t += 7.5
    assert t.seconds_since_last() == pytest.approx(7.5)
    assert t.succeeded() == 4 and t.total == 5


def test_tracker_needs_a_positive_limit():
    with pytest.raises(ValueError, match='max_consecutive must be >= 1'):
        FailureTracker(0)


def test_frame_watch():
    clock = Clock()
    w = FrameWatch(clock)
    assert w.running() is None and w.finish() == 0.0
    w.start(123)
    clock.t += 2.0
    assert w.running() == (123, pytest.approx(2.0))
    clock.t += 1.0
    assert w.finish() == pytest.approx(3.0)
    assert w.running() is None


def test_release_device_memory_on_cpu_and_unknown_devices():
    release_device_memory(torch.device('cpu'))
    release_device_memory(None)
    release_device_memory('cpu')


def test_release_device_memory_empties_the_cuda_cache(monkeypatch):
    """No GPU here: the CUDA calls are replaced, so the test checks that they are made for a CUDA device only."""
    emptied = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'empty_cache', lambda: emptied.append(True))
    release_device_memory(torch.device('cpu'))
    assert emptied == []
    release_device_memory(torch.device('cuda', 0))
    release_device_memory('cuda:1')
    assert emptied == [True, True]
