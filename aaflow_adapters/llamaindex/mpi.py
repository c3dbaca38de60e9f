"""`AAFlowIngestionPipeline.run` over MPI ranks: each rank transforms its shard, nodes cross as Arrow.

Under SPMD every rank builds the same pipeline and passes the same documents, so only the
output nodes move. A node crosses ranks as LlamaIndex's own JSON (`doc_to_json` without the
embedding; rebuilt by `json_to_doc`) in a string column, and its embedding in a
`fixed_size_list<float32>` column taken from the embedding step's Arrow column as it is; the
table goes to every rank with `Comm.allgather_table` (Arrow IPC bytes, never pickle).

- Rank 0 alone makes the docstore decisions (duplicates/upserts, by stock's helpers) and
  broadcasts them as positions; rank 0 alone writes the vector store and the docstore.
- Every rank returns every output node, in input order: its own as the objects it produced,
  the others' rebuilt from their rows.
- A failure on any rank ends the run on every rank with `RankError` naming that rank.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from llama_index.core.constants import DATA_KEY, TYPE_KEY
from llama_index.core.schema import BaseNode
from llama_index.core.storage.docstore.utils import json_to_doc

from aaflow_core.concurrency import drive
from aaflow_core.dataplane import embedding_column, embedding_matrix, embedding_type
from aaflow_core.distributed import Engine
from aaflow_core.errors import AAFlowError, InputError

from aaflow_adapters.llamaindex.core import RunCore, SyncCalls
from aaflow_adapters.llamaindex.transform import Outcome
from aaflow_adapters.llamaindex.vector import Segment

NODE, RANK, HAS, EMBEDDING = "node", "rank", "has_embedding", "embedding"


def node_schema(dim: int) -> pa.Schema:
    """Node JSON, the rank that made it, and (dim > 0) its embedding; rows without one hold zeros."""
    fields = [pa.field(NODE, pa.large_string()), pa.field(RANK, pa.int32()), pa.field(HAS, pa.bool_())]
    return pa.schema(fields + ([pa.field(EMBEDDING, embedding_type(dim))] if dim > 0 else []))


def node_json(node: BaseNode) -> str:
    """LlamaIndex's docstore JSON of a node, without its embedding (that travels as Arrow)."""
    try:
        return json.dumps({DATA_KEY: node.to_dict(exclude={"embedding"}), TYPE_KEY: node.get_type()})
    except (TypeError, ValueError) as exc:
        raise InputError(f"node {node.node_id}", f"cannot cross MPI ranks as JSON ({exc}); keep its metadata "
                         "JSON-serializable, or run with ranks=1") from exc


def local_dim(segments: Sequence[Segment]) -> int:
    """The embedding size of this rank's nodes (-1: none has one); InputError if they disagree."""
    dim = -1
    for node in (n for s in segments for n in s.nodes if n.embedding is not None):
        if dim == -1:
            dim = len(node.embedding)
        elif len(node.embedding) != dim:
            raise InputError(f"node {node.node_id}", f"embedding has {len(node.embedding)} values, others {dim}")
    return dim


def shared_dim(comm: Engine, dim: int) -> int:
    """The one embedding size of the whole job (collective), so every rank's table has one schema."""
    dims = set(comm.allgather_table(pa.table({"dim": pa.array([dim], pa.int64())})).column("dim").to_pylist())
    dims.discard(-1)
    if len(dims) > 1:
        raise AAFlowError(f"ranks produced embeddings of different sizes {sorted(dims)}")
    return dims.pop() if dims else -1


def embeddings(seg: Segment, dim: int) -> pa.Array:
    """The segment's embedding column: the embed step's own column, else one built from the nodes."""
    if seg.column is not None and len(seg.column) == len(seg.nodes) and seg.column.type == embedding_type(dim):
        return seg.column
    matrix = np.zeros((len(seg.nodes), dim), np.float32)
    for i, node in enumerate(seg.nodes):
        if node.embedding is not None:  # nodes that came with embeddings or from the cache: a visible copy
            matrix[i] = node.embedding
    return embedding_column(matrix)


def encode(segments: Sequence[Segment], texts: Sequence[str], rank: int, dim: int) -> pa.Table:
    """This rank's nodes as one record batch per segment (embedding columns shared, not copied)."""
    schema, batches, start = node_schema(dim), [], 0
    for seg in segments:
        n = len(seg.nodes)
        arrays = [pa.array(texts[start:start + n], pa.large_string()), pa.array([rank] * n, pa.int32()),
                  pa.array([node.embedding is not None for node in seg.nodes], pa.bool_())]
        batches.append(pa.record_batch(arrays + ([embeddings(seg, dim)] if dim > 0 else []), schema=schema))
        start += n
    return pa.Table.from_batches(batches, schema=schema)


def decode(table: pa.Table, comm: Engine, local: list[Segment]) -> list[Segment]:
    """Segments in rank (= input) order: this rank's own, the others' rebuilt from their rows."""
    bounds = np.searchsorted(table.column(RANK).to_numpy(), np.arange(comm.size + 1))
    segments: list[Segment] = []
    for r in range(comm.size):
        part = table.slice(int(bounds[r]), int(bounds[r + 1] - bounds[r]))
        if r == comm.rank or part.num_rows == 0:
            segments.extend(local if r == comm.rank else [])
            continue
        nodes = [json_to_doc(json.loads(text)) for text in part.column(NODE).to_pylist()]
        column = part.column(EMBEDDING).combine_chunks() if EMBEDDING in part.column_names else None
        has = part.column(HAS).to_pylist()
        if column is not None:
            for node, keep, row in zip(nodes, has, embedding_matrix(column)):
                node.embedding = row.tolist() if keep else None  # LlamaIndex nodes hold Python lists
        segments.append(Segment(nodes, column if all(has) else None))
    return segments


def select_on_root(core: RunCore, calls: SyncCalls, comm: Engine) -> Sequence[BaseNode]:
    """Rank 0's docstore decisions (stock's rules, its docstore; written after the transformations, see
    docstore.py), broadcast as input positions."""
    if core.docstore is None:
        return list(core.inputs)
    chosen = None
    with comm.collective():
        if comm.is_root:
            where = {id(node): i for i, node in enumerate(core.inputs)}
            picked = [where[id(node)] for node in drive(core.select(calls))]
            chosen = pa.table({"position": pa.array(picked, pa.int64())})
    return [core.inputs[i] for i in comm.bcast_table(chosen).column("position").to_pylist()]


def write_on_root(core: RunCore, calls: SyncCalls, comm: Engine, segments: Sequence[Segment],
                  to_run: Sequence[BaseNode]) -> None:
    """Rank 0 writes the docstore decisions, the vector store and the docstore once; a failure there
    ends every rank."""
    with comm.collective():
        if comm.is_root:
            drive(core.write(calls, segments, to_run))


def run_on_ranks(core: RunCore, calls: SyncCalls, comm: Engine) -> Sequence[BaseNode]:
    """Collective `run`: every rank transforms its contiguous shard of the inputs to run."""
    to_run = select_on_root(core, calls, comm)
    core.selected(len(comm.shard(len(to_run))))  # this rank's share

    def work(part: range) -> tuple[list[Segment], list[str], int]:
        local = core.transform(list(to_run[part.start:part.stop]), None).segments
        return local, [node_json(n) for s in local for n in s.nodes], local_dim(local)

    _, (local, texts, dim) = comm.run_sharded(len(to_run), work, ([], [], -1))
    table = encode(local, texts, comm.rank, shared_dim(comm, dim))
    segments = decode(comm.allgather_table(table), comm, local)
    core.stats.transform_s = time.perf_counter() - core.started - core.stats.prepare_s
    write_on_root(core, calls, comm, segments, to_run)
    return core.finish(Outcome(segments))
