"""The Parquet click-log format: writing, streaming into padded batches, errors."""


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from click_models.logs import (
    ClickLogError,
    ClickLogWriter,
    DocumentIndex,
    atomic_write_parquet,
    count_sessions,
    infer_list_size,
    iter_click_log,
    read_click_log,
    sessions_to_table,
)


def small_log(n=10, K=4, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, K), bool)
    mask[1, 2:] = False  # short list
    mask[2, 1] = False  # a gap: display ranks 1, 3, 4
    return dict(
        session_id=np.arange(n) + 100,
        query_id=rng.integers(0, 3, n),
        doc_ids=np.argsort(rng.uniform(size=(n, 50)), axis=1)[:, :K],  # distinct documents per session
        clicks=rng.uniform(size=(n, K)) < 0.3,
        mask=mask,
        labels=rng.integers(0, 5, (n, K)),
        examination=rng.uniform(size=(n, K)),
    )


def test_round_trip_keeps_positions_gaps_and_optional_columns(tmp_path):
    log = small_log()
    table = sessions_to_table(**log)
    assert "positions" in table.schema.names  # the gap needs explicit positions
    assert table.schema.field("doc_ids").type == pa.list_(pa.int64())
    assert table.column("positions")[2].as_py() == [1, 3, 4]
    atomic_write_parquet(table, tmp_path / "log.parquet")
    assert infer_list_size(tmp_path / "log.parquet") == 4
    batch = read_click_log(tmp_path / "log.parquet")
    m = log["mask"]
    np.testing.assert_array_equal(batch.mask, m)
    np.testing.assert_array_equal(batch.doc_ids, np.where(m, log["doc_ids"], 0))
    np.testing.assert_array_equal(batch.clicks, log["clicks"] & m)
    np.testing.assert_array_equal(batch.labels, np.where(m, log["labels"], 0))
    np.testing.assert_allclose(batch.examination, np.where(m, log["examination"], 0), rtol=1e-6)
    np.testing.assert_array_equal(batch.session_id, log["session_id"])


def test_streaming_gives_fixed_size_batches_over_several_files(tmp_path):
    log = small_log(n=25)
    table = sessions_to_table(**log)
    with ClickLogWriter(tmp_path / "logs", rows_per_file=10) as writer:
        writer.write(table.slice(0, 7))
        writer.write(table.slice(7))
    files = sorted((tmp_path / "logs").glob("*.parquet"))
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [10, 10, 5]
    assert not list((tmp_path / "logs").glob(".*"))  # no temporary files left
    assert count_sessions(tmp_path / "logs") == 25
    batches = list(iter_click_log(tmp_path / "logs", batch_size=8))
    assert [b.doc_ids.shape for b in batches] == [(8, 4)] * 4
    assert [b.num_sessions for b in batches] == [8, 8, 8, 1]
    ids = np.concatenate([b.session_id[b.row_valid] for b in batches])
    np.testing.assert_array_equal(ids, log["session_id"])
    assert not batches[-1].mask[1:].any()  # padding rows show nothing


def test_the_reader_thread_stops_with_its_consumer_and_hands_over_errors(tmp_path):
    """iter_click_log reads ahead in a thread: a consumer that stops early stops it, and an error found by the
    thread (here a part that is not Parquet) is raised in the consumer, with no thread left behind."""
    import threading

    log = small_log(n=40)
    with ClickLogWriter(tmp_path / "logs", rows_per_file=10) as writer:
        writer.write(sessions_to_table(**log))
    batches = iter_click_log(tmp_path / "logs", batch_size=4)
    first = next(batches)
    assert first.num_sessions == 4
    batches.close()
    assert not [t for t in threading.enumerate() if t.name == "ultr-log-reader"]
    last = sorted((tmp_path / "logs").glob("*.parquet"))[-1]
    last.write_bytes(b"not parquet")
    with pytest.raises(Exception, match="Parquet|parquet|magic"):
        for _ in iter_click_log(tmp_path / "logs", batch_size=4):
            pass
    assert not [t for t in threading.enumerate() if t.name == "ultr-log-reader"]


def test_writer_leaves_no_partial_file_on_error(tmp_path):
    table = sessions_to_table(**small_log())
    with pytest.raises(RuntimeError):
        with ClickLogWriter(tmp_path / "logs", rows_per_file=100) as writer:
            writer.write(table)
            raise RuntimeError("simulation crashed")
    assert list((tmp_path / "logs").iterdir()) == []


def test_format_errors_name_the_file_and_problem(tmp_path):
    bad = pa.table({"session_id": [1], "query_id": [1], "doc_ids": [[1, 2]]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ClickLogError, match=r"bad.parquet: missing required column 'clicks'"):
        list(iter_click_log(tmp_path / "bad.parquet"))
    uneven = pa.table({"session_id": [7], "query_id": [1], "doc_ids": [[1, 2]], "clicks": [[True]]})
    pq.write_table(uneven, tmp_path / "uneven.parquet")
    with pytest.raises(ClickLogError, match="session 7 has 2 doc_ids but 1 clicks"):
        list(iter_click_log(tmp_path / "uneven.parquet"))
    with pytest.raises(ClickLogError, match="no such click log"):
        list(iter_click_log(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ClickLogError, match="no .parquet files"):
        list(iter_click_log(empty))
    too_long = tmp_path / "long.parquet"
    atomic_write_parquet(sessions_to_table(**small_log()), too_long)
    with pytest.raises(ClickLogError, match="positions must lie in 1..2"):
        list(iter_click_log(too_long, list_size=2))


def test_list_size_is_inferred_without_metadata(tmp_path):
    table = pa.table({
        "session_id": pa.array([1, 2], pa.int64()),
        "query_id": pa.array([1, 1], pa.int64()),
        "doc_ids": pa.array([[1, 2, 3], [4]], pa.list_(pa.int64())),
        "clicks": pa.array([[False, True, False], [True]], pa.list_(pa.bool_())),
    })
    pq.write_table(table, tmp_path / "plain.parquet")
    assert infer_list_size(tmp_path / "plain.parquet") == 3
    batch = read_click_log(tmp_path / "plain.parquet")
    np.testing.assert_array_equal(batch.mask, [[1, 1, 1], [1, 0, 0]])


def test_document_index_maps_pairs_and_unseen(tmp_path):
    log = small_log()
    table = sessions_to_table(**log)
    atomic_write_parquet(table, tmp_path / "log.parquet")
    batches = list(iter_click_log(tmp_path / "log.parquet", batch_size=4))
    index = DocumentIndex.from_batches(batches)
    m = log["mask"]
    pairs = {(q, d) for q, row, mr in zip(log["query_id"], log["doc_ids"], m) for d, keep in zip(row, mr) if keep}
    assert index.size == len(pairs)
    looked_up = index.lookup(log["query_id"], log["doc_ids"], m)
    assert (looked_up[m] >= 0).all() and (looked_up[~m] == -1).all()
    assert list(zip(index.query_ids[looked_up[0]], index.doc_ids[looked_up[0]])) == list(
        zip([log["query_id"][0]] * 4, log["doc_ids"][0])
    )
    assert index.lookup(np.array([99]), np.array([[1, 2]]))[0].tolist() == [-1, -1]
    # ids beyond the packed range use the general path
    big = DocumentIndex(np.array([2**40, 1]), np.array([5, 2**40]))
    assert big.lookup(np.array([2**40, 1, 3]), np.array([[5], [2**40], [5]]))[:, 0].tolist() == [0, 1, -1]
