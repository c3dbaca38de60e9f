"""Arrow <-> NumPy crossings share buffers; batches refuse pickling; IPC round-trips."""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from aaflow_core.dataplane import SeqBatch, buffer_address, embedding_column, embedding_matrix, from_ipc, to_ipc


def test_embedding_column_shares_the_matrix_buffer_both_ways():
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    column = embedding_column(matrix)
    assert column.type == pa.list_(pa.float32(), 3)
    assert buffer_address(column) == buffer_address(matrix)
    view = embedding_matrix(column.slice(1, 2))
    np.testing.assert_array_equal(view, matrix[1:3])
    assert buffer_address(view) == buffer_address(matrix[1:])


def test_crossings_refuse_to_copy_silently():
    with pytest.raises(TypeError):
        embedding_column(np.zeros((2, 3), dtype=np.float64))
    with pytest.raises(ValueError):
        embedding_column(np.zeros((3, 2), dtype=np.float32).T)
    with pytest.raises(TypeError):
        embedding_matrix(pa.array([[1.0, 2.0]], pa.list_(pa.float64(), 2)))


def test_seq_batch_cannot_be_pickled():
    batch = pa.RecordBatch.from_pydict({"x": [1]})
    with pytest.raises(TypeError, match="must not be pickled"):
        pickle.dumps(SeqBatch(0, batch))


def test_ipc_round_trip_keeps_embeddings_bit_exact():
    matrix = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    table = pa.table({"id": list("abcde"), "embedding": embedding_column(matrix)})
    back = from_ipc(to_ipc(table))
    assert back.equals(table)
    np.testing.assert_array_equal(embedding_matrix(back.column("embedding")), matrix)
