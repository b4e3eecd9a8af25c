"""tickline.core: the real-time primitives everything else is built on.

* :mod:`~tickline.core.ring` — :class:`SpscRing`, a bounded single-producer/single-consumer
  ring with sequence numbers and batch claim/drain;
* :mod:`~tickline.core.shm_ring` — :class:`SpscShmRing`, the same contract between two
  processes over shared memory;
* :mod:`~tickline.core.wait` — the named wait strategies (:class:`BlockingWait`,
  :class:`BackoffWait`, :class:`YieldWait`, :class:`SpinWait`) both of the above consumers use;
* :mod:`~tickline.core.processor` — the event processor: one consumer, natural batching,
  priorities, partitions; wired from
  :mod:`~tickline.core.intake` (bounded lanes and the backpressure policies
  :class:`RejectWhenFull`, :class:`BlockWhenFull`, :class:`DropOldest`),
  :mod:`~tickline.core.dispatch` (handlers and deadlines) and
  :mod:`~tickline.core.drivers` (the thread and asyncio consumers);
* :mod:`~tickline.core.workers` — process partitions fed through shared-memory rings;
* :mod:`~tickline.core.metrics` — single-writer counters and HDR latency histograms with
  Prometheus export;
* :mod:`~tickline.core.gctune` — garbage-collector pause monitoring and the settings the
  benchmarks showed to help.

``core`` imports nothing else from tickline.
"""

from tickline.core.processor import (
    BackpressurePolicy,
    BlockWhenFull,
    Deadline,
    DeadlineClass,
    DropOldest,
    EventProcessor,
    PartitionedProcessor,
    ProcessorFull,
    ProcessorStopped,
    RejectWhenFull,
)
from tickline.core.ring import RingFull, SpscRing
from tickline.core.shm_ring import SpscShmRing
from tickline.core.wait import BackoffWait, BlockingWait, SpinWait, WaitStrategy, YieldWait

__all__ = [
    "BackoffWait", "BackpressurePolicy", "BlockWhenFull", "BlockingWait", "Deadline",
    "DeadlineClass", "DropOldest", "EventProcessor", "PartitionedProcessor", "ProcessorFull",
    "ProcessorStopped", "RejectWhenFull", "RingFull", "SpinWait", "SpscRing", "SpscShmRing",
    "WaitStrategy", "YieldWait",
]
