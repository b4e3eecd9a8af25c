"""tickline.core: the real-time primitives everything else is built on.

* :mod:`~tickline.core.ring` — :class:`SpscRing`, a bounded single-producer/single-consumer
  ring with sequence numbers and batch claim/drain;
* :mod:`~tickline.core.shm_ring` — :class:`SpscShmRing`, the same contract between two
  processes over shared memory, with named wait strategies;
* :mod:`~tickline.core.processor` — the event processor: bounded lanes, one consumer, natural
  batching, backpressure, deadlines, priorities, partitions;
* :mod:`~tickline.core.workers` — process partitions fed through shared-memory rings;
* :mod:`~tickline.core.metrics` — single-writer counters and HDR latency histograms with
  Prometheus export;
* :mod:`~tickline.core.gctune` — garbage-collector pause monitoring and the settings the
  benchmarks showed to help.

``core`` imports nothing else from tickline.
"""

from tickline.core.processor import (
    Deadline,
    DeadlineClass,
    EventProcessor,
    PartitionedProcessor,
    ProcessorFull,
    ProcessorStopped,
)
from tickline.core.ring import RingFull, SpscRing
from tickline.core.shm_ring import SpscShmRing

__all__ = [
    "Deadline", "DeadlineClass", "EventProcessor", "PartitionedProcessor", "ProcessorFull",
    "ProcessorStopped", "RingFull", "SpscRing", "SpscShmRing",
]
