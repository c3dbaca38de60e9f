"""Operators: small classes, one job each, from an Arrow RecordBatch to an Arrow RecordBatch."""
from aaflow_core.operators.base import Operator
from aaflow_core.operators.chunk import ChunkOperator, RecursiveCharacterChunker
from aaflow_core.operators.embed import EmbedOperator, length_order, shared_embedder
from aaflow_core.operators.generate import GenerateOperator
from aaflow_core.operators.load import LoadOperator
from aaflow_core.operators.map import MapOperator
from aaflow_core.operators.upsert import UpsertOperator

__all__ = [
    "ChunkOperator", "EmbedOperator", "GenerateOperator", "LoadOperator", "MapOperator", "Operator",
    "RecursiveCharacterChunker", "UpsertOperator", "length_order", "shared_embedder",
]
