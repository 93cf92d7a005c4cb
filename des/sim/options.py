"""Knobs of the engine model, and the preset that reproduces AstraSim's analytical backends."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from collectives.base import PlanOptions
from des.sim.hops import DEFAULT_PACKET_BYTES, HopModel, TransportMode, hop_model_for
from topologies.faults import LinkFault

#: Pieces a collective's buffer is cut into (AstraSim: preferred-dataset-splits).
DEFAULT_CHUNKS = 4
#: AstraSim's system-layer defaults: ``endpoint-delay`` (ns) and ``local-mem-bw`` (GB/s =
#: bytes/ns), used when a scenario or system.json gives none.
ASTRA_ENDPOINT_DELAY_NS = 10.0
ASTRA_LOCAL_MEM_BW = 1600.0


class Chunking(StrEnum):
    """How a collective's buffer is cut into chunks."""

    SPLIT = "split"  # `chunks` equal pieces
    ASTRA = "astra"  # AstraSim: floor(size / splits) bytes each, at least one byte per NPU


class IssueOrder(StrEnum):
    """Which ready node a free stream takes next."""

    READY = "ready"  # the one that became ready first (ties: lowest node id)
    NODE_ID = "node_id"  # the lowest node id (AstraSim's issue_dep_free_nodes)


@dataclass
class EngineOptions:
    """Knobs of the engine model. Defaults describe a modern GPU fabric, not AstraSim.

    Network: ``transport`` and ``packet_bytes``; ``contention=False`` gives every message its
    uncontended time (AstraSim's congestion-unaware model); ``quantize`` floors hop times to
    whole ns as AstraSim does.
    Collectives: ``chunks`` pieces per collective (with ``chunking=astra``, AstraSim's
    preferred-dataset-splits), or pieces of at most ``chunk_bytes`` when that is set;
    ``chunks_in_flight`` per rank and logical dimension (0 = all);
    ``algorithms`` maps a collective type to the algorithm used when a node names none
    (``auto`` lets :func:`collectives.auto.choose_algorithm` pick per topology and size; a
    tuple of names, the fastest of them for each collective, :func:`des.sim.choices.fastest`);
    ``dim_algorithms`` the per-dimension algorithms of hierarchical collectives;
    ``window`` limits direct algorithms to that many messages in flight per rank (0 = all);
    ``endpoint_delay_ns`` paid when a chunk starts a phase and after every step's receives;
    ``collective_launch_ns`` paid once by every member of a collective when its communication
    stream takes it, before any of its data moves (NCCL's per-call base latency, ``baseLat``
    in src/graph/tuning.cc, launch and completion of the kernel), in both backends;
    ``reduction_bandwidth`` (bytes/ns) makes reducing steps cost 3 x bytes / bandwidth (two
    reads and a write; AstraSim's MemBus accounting), None = free;
    ``sends_complete_collective``: a rank's part ends only when its sends have landed
    (AstraSim ends it at its last receive).
    GPUs: ``comm_streams`` collectives at once per GPU; ``sends_use_comm_stream`` makes sends
    take a communication stream too (AstraSim's one comm slot); ``issue_order``; ``speed``
    per-rank compute speed factor (0.5 = a straggler at half speed, compute and memory nodes);
    ``min_compute_ns`` the least a compute node takes (AstraSim: 1 ns);
    ``recv_busy_from_post`` counts a receive as communication from when it is posted
    (AstraSim's statistics) rather than from when its sender is ready.
    Point to point: a send moves in chunks of at most ``p2p_chunk_bytes`` with at most
    ``p2p_window`` undelivered (NCCL's slotted buffers), so flows sharing a link interleave.
    ``p2p_rendezvous``: a send's data leaves only once its matching receive is posted, as
    with NCCL's two-sided send/recv ("Rank peer needs to call ncclRecv ...; this operation is
    blocking for the GPU", NCCL user guide, point-to-point functions); default False: data
    leaves when the send is ready (eager, AstraSim's behaviour).
    Faults: ``timed_faults`` start (and maybe end) during the run; untimed ones are applied to
    the topology before it (:func:`topologies.faults.apply_faults`).
    ``record_link_activity`` keeps every transmission interval per link (trace counters).
    ``hop_model`` replaces the built-in link timing (:class:`des.sim.hops.HopModel`).
    ``lockstep`` lets symmetric collectives run as one representative rank where that is
    provably exact (:mod:`des.sim.lockstep`); False simulates every message.
    ``replay`` lets a folded graph's recurring collectives replay their first run where that
    is provably exact (:mod:`des.sim.folded`). ``trains`` moves a lone send on an idle route
    as one event until something else shares its links (:mod:`des.sim.flows`).
    """

    transport: TransportMode = TransportMode.CUT_THROUGH
    packet_bytes: float = DEFAULT_PACKET_BYTES
    contention: bool = True
    quantize: bool = False
    comm_streams: int = 1
    chunks: int = DEFAULT_CHUNKS
    chunking: Chunking = Chunking.SPLIT
    chunk_bytes: float | None = None
    chunks_in_flight: int = 0
    algorithms: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    dim_algorithms: tuple[str, ...] = ()
    window: int = 0
    endpoint_delay_ns: float = 0.0
    collective_launch_ns: float = 0.0
    reduction_bandwidth: float | None = None
    sends_complete_collective: bool = True
    sends_use_comm_stream: bool = False
    issue_order: IssueOrder = IssueOrder.READY
    min_compute_ns: float = 0.0
    recv_busy_from_post: bool = False
    speed: dict[int, float] = field(default_factory=dict)
    p2p_chunk_bytes: float = 1 << 20
    p2p_window: int = 4
    p2p_rendezvous: bool = False
    timed_faults: list[LinkFault] = field(default_factory=list)
    record_link_activity: bool = False
    progress_every: int = 2000
    astra: bool = False
    hop_model: HopModel | None = None
    lockstep: bool = True
    replay: bool = True
    trains: bool = True

    def __post_init__(self) -> None:
        self.transport = TransportMode(self.transport)
        self.chunking = Chunking(self.chunking)
        self.issue_order = IssueOrder(self.issue_order)
        if not self.packet_bytes > 0:
            raise ValueError(f"packet_bytes must be > 0, got {self.packet_bytes}")
        if self.comm_streams < 1:
            raise ValueError(f"comm_streams must be >= 1, got {self.comm_streams}")
        if self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {self.chunks}")
        if not self.collective_launch_ns >= 0:
            raise ValueError(f"collective_launch_ns must be >= 0, got "
                             f"{self.collective_launch_ns}")
        if self.chunk_bytes is not None and not self.chunk_bytes > 0:
            raise ValueError(f"chunk_bytes must be > 0, got {self.chunk_bytes}")
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        if self.chunks_in_flight < 0:
            raise ValueError(f"chunks_in_flight must be >= 0, got {self.chunks_in_flight}")
        if self.p2p_chunk_bytes <= 0 or self.p2p_window < 1:
            raise ValueError("p2p_chunk_bytes must be > 0 and p2p_window >= 1")
        if not self.endpoint_delay_ns >= 0:
            raise ValueError(f"endpoint_delay_ns must be >= 0, got {self.endpoint_delay_ns}")
        if self.reduction_bandwidth is not None and not self.reduction_bandwidth > 0:
            raise ValueError("reduction_bandwidth must be > 0 bytes/ns (or None for free)")
        if self.quantize and self.contention and self.transport is not \
                TransportMode.STORE_AND_FORWARD:
            raise ValueError("quantize needs store_and_forward (AstraSim's hop model)")
        if self.timed_faults and not self.contention:
            raise ValueError("timed faults need contention=True: the uncontended model has no "
                             "queues to pull messages back from")
        for rank, factor in self.speed.items():
            if not (0 < factor <= 1e6) or math.isnan(factor):
                raise ValueError(f"speed[{rank}] must be > 0, got {factor!r}")

    def hop_model_instance(self) -> HopModel:
        """The hop model these options ask for: ``hop_model`` if set, else the built-in model
        of ``transport`` (AstraSim's quantized hops when ``quantize``)."""
        if self.hop_model is not None:
            return self.hop_model
        return hop_model_for(self.transport, self.packet_bytes, self.quantize)

    @property
    def plan_options(self) -> PlanOptions:
        """What collective plans need to know of these options."""
        return PlanOptions(integer_sizes=self.quantize, window=self.window,
                           dim_algorithms=self.dim_algorithms, astra=self.astra)

    @classmethod
    def astra_compat(cls, *, congestion_aware: bool = True,
                     endpoint_delay_ns: float = ASTRA_ENDPOINT_DELAY_NS,
                     local_mem_bw: float = ASTRA_LOCAL_MEM_BW, splits: int = DEFAULT_CHUNKS,
                     algorithms: dict[str, str] | None = None,
                     dim_algorithms: tuple[str, ...] = (), **overrides) -> EngineOptions:
        """AstraSim 2.x analytical semantics (congestion-aware, or -unaware with
        ``congestion_aware=False``): store-and-forward hops in whole ns, one chunk at a time per
        dimension, endpoint delay per step, reductions at ``local_mem_bw`` (GB/s = 1e9 B/s =
        bytes/ns), one communication slot shared by collectives and sends, nodes issued by id.
        Sources: the AstraSim system layer (Sys.cc, Ring.cc, PacketBundle.cc) and the
        astra-network-analytical backends, checked against AstraSim's own outputs."""
        values = dict(
            transport=TransportMode.STORE_AND_FORWARD, contention=congestion_aware,
            quantize=True, chunks=splits, chunking=Chunking.ASTRA, chunks_in_flight=1,
            algorithms=algorithms or {}, dim_algorithms=dim_algorithms,
            endpoint_delay_ns=endpoint_delay_ns, reduction_bandwidth=local_mem_bw,
            sends_complete_collective=False, sends_use_comm_stream=True,
            issue_order=IssueOrder.NODE_ID, min_compute_ns=1.0, comm_streams=1,
            p2p_chunk_bytes=math.inf, p2p_window=1, recv_busy_from_post=True, astra=True)
        values.update(overrides)
        return cls(**values)
