"""Baidu-ULTR replay: raw partitions -> click log (round trip), lexical features (by hand), bad input,
resume, the real annotation sample, and training with per-frequency-group evaluation."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from click_models.logs import ClickLogError, click_log_files, read_click_log
from simulators.baidu import (MIN_DOCUMENTS, PLACEHOLDER_TITLES, BaiduFormatError, doc_ids_from_md5, parse_block,
                              read_annotations, split_annotations, stable_id)
from simulators.baidu_convert import convert
from simulators.baidu_synthetic import format_sessions, synthetic_sessions, write_partition, write_partitions
from simulators.lexical import FEATURE_NAMES, CorpusStatistics

ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "baidu-ultr" / "annotation-sample.txt"
needs_annotations = pytest.mark.skipif(not ANNOTATIONS.exists(), reason=f"{ANNOTATIONS} not found (../shared/data)")


def expected_sessions(sessions):
    """The cleaning rules written out per session in plain Python (the reference for the round trip)."""
    out = []
    for session in sessions:
        kept, seen = [], set()
        for k in sorted(range(len(session.urls)), key=lambda k: session.positions[k]):
            if session.titles[k] in PLACEHOLDER_TITLES or session.urls[k] in seen:
                continue
            seen.add(session.urls[k])
            kept.append(k)
        out.append(kept if len(kept) >= MIN_DOCUMENTS else None)
    return out


def doc_id_of(url: str) -> int:
    return int(url[:15], 16)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("baidu")
    partitions = write_partitions(root / "raw", num_partitions=3, sessions_per_partition=200, seed=1)
    annotations = ANNOTATIONS if ANNOTATIONS.exists() else None
    summary = convert(root / "raw", root / "out", annotations=annotations, workers=1, block_bytes=1 << 16)
    return root, partitions, summary


def test_round_trip_every_session(converted):
    root, partitions, summary = converted
    log = read_click_log(root / "out" / "logs")
    by_id = {int(s): i for i, s in enumerate(log.session_id[log.row_valid])}
    checked = 0
    for p, sessions in enumerate(partitions):
        for ordinal, (session, kept) in enumerate(zip(sessions, expected_sessions(sessions))):
            session_id = (p << 32) + ordinal
            if kept is None:
                assert session_id not in by_id
                continue
            row = by_id[session_id]
            mask = log.mask[row]
            ranks = np.flatnonzero(mask) + 1
            assert ranks.tolist() == [session.positions[k] for k in kept]
            assert log.clicks[row][mask].tolist() == [bool(session.clicks[k]) for k in kept]
            assert log.doc_ids[row][mask].tolist() == [doc_id_of(session.urls[k]) for k in kept]
            assert log.query_id[row] == stable_id(pa.array(["\x01".join(map(str, session.query))]))[0]
            checked += 1
    assert checked == summary["total"]["sessions_kept"] > 500


def test_extra_columns_round_trip(converted):
    root, partitions, _ = converted
    table = pq.read_table(click_log_files(root / "out" / "logs")[0]).to_pylist()
    sessions = partitions[0]
    expected = expected_sessions(sessions)
    row = table[0]
    kept = expected[row["session_id"] & 0xFFFFFFFF]
    session = sessions[row["session_id"] & 0xFFFFFFFF]
    assert row["dwell_time"] == pytest.approx([session.dwell_time[k] for k in kept], rel=1e-6)
    assert row["displayed_time"] == pytest.approx([session.displayed_time[k] for k in kept], rel=1e-6)
    assert row["media_type"] == [session.media_type[k] for k in kept]
    assert row["serp_height"] == [session.serp_height[k] for k in kept]
    assert row["slipoff_count"] == [session.slipoff_count[k] for k in kept]
    assert row["skip"] == [bool(session.skip[k]) for k in kept]


def test_conversion_summary_and_id_table(converted):
    root, partitions, summary = converted
    all_sessions = [s for part in partitions for s in part]
    expected = expected_sessions(all_sessions)
    assert summary["total"]["sessions"] == len(all_sessions)
    assert summary["total"]["sessions_kept"] == sum(k is not None for k in expected)
    assert summary["total"]["placeholders"] == sum(t in PLACEHOLDER_TITLES for s in all_sessions for t in s.titles)
    ids = pq.read_table(root / "out" / "doc_ids.parquet").to_pylist()
    for entry in ids:
        assert entry["doc_id"] == doc_id_of(entry["url_md5"])
    assert len({e["doc_id"] for e in ids}) == len(ids)
    manifest = json.loads((root / "out" / "logs" / "manifest.json").read_text())
    assert manifest["rows"] == summary["total"]["sessions_kept"]


def test_doc_ids_from_md5():
    hex_bytes = np.frombuffer(b"0123456789abcdefABCDEF0123456789", np.uint8)[None]
    ids, ok = doc_ids_from_md5(hex_bytes)
    assert ok[0] and ids[0] == int("0123456789abcde", 16)
    _, ok = doc_ids_from_md5(np.frombuffer(b"g" * 32, np.uint8)[None])
    assert not ok[0]


# ---------------------------------------------------------------------- features, by hand
def bm25_by_hand(query, doc, corpus_docs, k1=1.2, b=0.75):
    N = len(corpus_docs)
    avg = sum(len(d) for d in corpus_docs) / N
    score = 0.0
    for t in query:
        df = sum(t in d for d in corpus_docs)
        idf = math.log(1 + (N - df + 0.5) / (df + 0.5))
        tf = doc.count(t)
        score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avg))
    return score


def test_lexical_features_match_hand_computation():
    titles = [[1, 2, 3], [2, 2, 4], [5]]
    abstracts = [[3, 3, 6, 1], [], [2, 7]]
    documents = [t + a for t, a in zip(titles, abstracts)]
    corpus = CorpusStatistics()
    lists = pa.array
    corpus.add_documents(lists(titles[:2], pa.list_(pa.int32())), lists(abstracts[:2], pa.list_(pa.int32())))
    corpus.add_documents(lists(titles[2:], pa.list_(pa.int32())), lists(abstracts[2:], pa.list_(pa.int32())))
    queries = [[2, 3], [2, 2, 9], [], [6]]
    pairs = [(0, 0), (1, 1), (2, 2), (3, 0)]  # (query, document)
    got = corpus.features(lists([queries[q] for q, _ in pairs], pa.list_(pa.int32())),
                          lists([titles[d] for _, d in pairs], pa.list_(pa.int32())),
                          lists([abstracts[d] for _, d in pairs], pa.list_(pa.int32())))
    total = sum(len(d) for d in documents)
    N = len(documents)
    for row, (q, d) in enumerate(pairs):
        query, doc = queries[q], documents[d]
        idf = [math.log(1 + (N - sum(t in x for x in documents) + 0.5) / (sum(t in x for x in documents) + 0.5))
               for t in query]
        p_c = [(sum(x.count(t) for x in documents) + 1) / (total + 1) for t in query]
        tf = [doc.count(t) for t in query]
        expected = {
            "bm25": bm25_by_hand(query, doc, documents),
            "title_bm25": bm25_by_hand(query, titles[d], titles),
            "abstract_bm25": bm25_by_hand(query, abstracts[d], abstracts),
            "tf_idf": sum(f * i for f, i in zip(tf, idf)),
            "tf": sum(tf),
            "idf": sum(idf),
            "ql_jelinek_mercer_short": sum(math.log(0.9 * f / len(doc) + 0.1 * p) for f, p in zip(tf, p_c)),
            "ql_jelinek_mercer_long": sum(math.log(0.3 * f / len(doc) + 0.7 * p) for f, p in zip(tf, p_c)),
            "ql_dirichlet": sum(math.log((f + 128 * p) / (len(doc) + 128)) for f, p in zip(tf, p_c)),
            "document_length": len(doc), "title_length": len(titles[d]), "abstract_length": len(abstracts[d]),
        }
        for j, name in enumerate(FEATURE_NAMES):
            assert got[row, j] == pytest.approx(expected[name], rel=1e-12, abs=1e-12), (row, name)


def test_corpus_statistics_merge_and_save(tmp_path):
    a, b = CorpusStatistics(), CorpusStatistics()
    t = pa.list_(pa.int32())
    a.add_documents(pa.array([[1, 1, 2]], t), pa.array([[3]], t))
    b.add_documents(pa.array([[2, 40]], t), pa.array([[]], t))
    a.merge(b)
    assert a.num_documents == 2 and a.df["document"][2] == 2 and a.cf["title"][1] == 2 and a.df["title"][40] == 1
    loaded = CorpusStatistics.load(a.save(tmp_path / "corpus.parquet"))
    for field in ("title", "abstract", "document"):
        assert np.array_equal(loaded.df[field][:41], a.df[field][:41])
        assert np.array_equal(loaded.cf[field][:41], a.cf[field][:41])
    assert loaded.total_length == a.total_length


# ---------------------------------------------------------------------- bad input
def good_lines():
    return format_sessions(synthetic_sessions(3, seed=5)).decode().splitlines()


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines[1:], "line 1: a document line before any query line"),
    (lambda lines: [lines[0], lines[1].rsplit("\t", 1)[0], *lines[2:]], "line 2: 31 tab-separated fields"),
    (lambda lines: [lines[0], "x" + lines[1], *lines[2:]], "line 2: position 'x1' is not an integer"),
    (lambda lines: [lines[0], "31" + lines[1][1:], *lines[2:]], "line 2: position 31 outside 1..30"),
    (lambda lines: [lines[0], lines[1].replace("\t0\t", "\tzz\t", 1), *lines[2:]], "line 2:"),
    (lambda lines: [lines[0], lines[1], lines[2].replace(lines[2].split("\t")[2], "12\x01ab", 1), *lines[3:]],
     "line 3: title holds a token that is not an integer id"),
    (lambda lines: [lines[0], lines[1], "1" + lines[2][1:], *lines[3:]], "line 3: position 1 appears twice"),
    (lambda lines: [lines[0], lines[1] + "\u00e9", *lines[2:]], "line 2: a byte that is not ASCII"),
    (lambda lines: [lines[0], lines[1].replace(lines[1].split("\t")[1], "abc", 1), *lines[2:]],
     "line 2: url_md5 is not 32 hexadecimal digits"),
])
def test_bad_lines_name_partition_and_line(tmp_path, edit, message):
    lines = edit(good_lines())
    path = write_bytes_gz(tmp_path / "part-00007.gz", ("\n".join(lines) + "\n").encode())
    with pytest.raises(BaiduFormatError, match="part-00007.gz: " + message.replace("(", r"\(")):
        convert(path, tmp_path / "out")
    assert not (tmp_path / "out" / "logs" / "manifest.json").exists()
    with pytest.raises(ClickLogError, match="has not finished"):
        click_log_files(tmp_path / "out" / "logs")


def write_bytes_gz(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as handle:
        handle.write(data)
    return path


def test_truncated_gzip(tmp_path):
    data = gzip.compress(format_sessions(synthetic_sessions(200, seed=2)))
    path = tmp_path / "part-00000.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BaiduFormatError, match="part-00000.gz: the gzip stream ends early"):
        convert(path, tmp_path / "out")
    path.write_bytes(b"not gzip at all")
    with pytest.raises(BaiduFormatError, match="not a readable gzip file"):
        convert(path, tmp_path / "out2")


def test_skip_bad_lines_counts_and_reports(tmp_path):
    lines = good_lines()
    query_of_second = next(i for i, line in enumerate(lines) if i > 0 and line.count("\t") == 2)
    lines[3] = "x" + lines[3]  # a bad document line: skipped alone
    lines[query_of_second] = lines[query_of_second] + "\textra"  # a bad query line: its session goes too
    path = write_bytes_gz(tmp_path / "part-00000.gz", ("\n".join(lines) + "\n").encode())
    summary = convert(path, tmp_path / "out", skip_bad_lines=True)
    total = summary["total"]
    assert total["bad_lines"] == 2
    assert total["documents_of_bad_queries"] > 0
    assert any("line 4: position" in example for example in total["bad_line_examples"])
    assert total["sessions"] == 2 and read_click_log(tmp_path / "out" / "logs").num_sessions <= 2


@pytest.mark.slow
def test_block_boundaries_do_not_change_the_output(tmp_path):
    sessions = synthetic_sessions(300, seed=9)
    path = write_partition(tmp_path / "part-00000.gz", sessions)
    convert(path, tmp_path / "small", block_bytes=2_000)
    convert(path, tmp_path / "large", block_bytes=1 << 24)
    small = pq.read_table(tmp_path / "small" / "logs" / "part-00000.parquet")
    large = pq.read_table(tmp_path / "large" / "logs" / "part-00000.parquet")
    assert small.equals(large)


def test_resume_skips_finished_partitions(tmp_path):
    write_partitions(tmp_path / "raw", num_partitions=2, sessions_per_partition=50, seed=3)
    first = convert(tmp_path / "raw", tmp_path / "out")
    before = (tmp_path / "out" / "logs" / "part-00000.parquet").read_bytes()
    # a crash after partition 0: partition 1's files and marker are gone
    (tmp_path / "out" / ".work" / "part-00001.json").unlink()
    (tmp_path / "out" / "logs" / "part-00001.parquet").unlink()
    second = convert(tmp_path / "raw", tmp_path / "out")
    assert second["partitions"][0]["seconds"] == first["partitions"][0]["seconds"]  # not redone
    assert (tmp_path / "out" / "logs" / "part-00000.parquet").read_bytes() == before
    assert second["total"] == first["total"]
    assert read_click_log(tmp_path / "out" / "logs").num_sessions == first["total"]["sessions_kept"]


# ---------------------------------------------------------------------- annotations and training
@needs_annotations
def test_real_annotation_sample():
    table = read_annotations(ANNOTATIONS)
    assert table.num_rows == 500
    labels = np.bincount(table.column("label").to_numpy(), minlength=5)
    assert labels.tolist() == [314, 43, 114, 27, 2]  # cut -f5 | sort | uniq -c
    assert len(set(table.column("query_id").to_pylist())) == 9
    pairs = set(zip(table.column("query_id").to_pylist(), table.column("doc_id").to_pylist()))
    assert len(pairs) == 500
    test = split_annotations(table.column("query_id").to_numpy(), table.column("frequency_bucket").to_numpy())
    assert 0 < test.sum() < 500
    assert np.array_equal(test, split_annotations(table.column("query_id").to_numpy(),
                                                  table.column("frequency_bucket").to_numpy()))


def test_bad_annotation_lines(tmp_path):
    path = tmp_path / "annotations.txt"
    path.write_text("0\t1\x012\t3\t4\t7\t1\n")
    with pytest.raises(BaiduFormatError, match="line 1: label outside 0..4"):
        read_annotations(path)
    path.write_text("0\t1\x012\t3\t4\t2\n")
    with pytest.raises(BaiduFormatError, match="line 1: 5 tab-separated fields"):
        read_annotations(path)


@needs_annotations
@pytest.mark.slow
def test_train_naive_and_ips_with_frequency_groups(converted, tmp_path):
    from simulators.datasets import load_dataset
    from ultr.training import TrainConfig, train, write_outputs

    root, _, _ = converted
    dataset = load_dataset(f"baidu:{root / 'out'}")
    assert dataset.num_features == len(FEATURE_NAMES) and not dataset.train_labels
    for learner, extra in (("naive", {}), ("ips", {"propensities": "em"})):
        config = TrainConfig(learner=learner, epochs=1, eval_every=5, **extra)
        result = train(root / "out" / "logs", dataset, config, progress=False)
        assert set(result.test) >= {"dcg@1", "dcg@3", "dcg@5", "dcg@10", "mrr@10", "ndcg@10"}
        assert result.test_groups and set(result.test_groups) <= {"high", "mid", "tail"}
        counted = sum(g["num_queries"] for g in result.test_groups.values())
        assert counted == result.test["num_queries"]
        write_outputs(tmp_path / learner, result, dataset, config)
        assert "test_groups" in json.loads((tmp_path / learner / "metrics.json").read_text())
    with pytest.raises(ValueError, match="relevance labels"):
        train(None, dataset, TrainConfig(learner="skyline"), progress=False)


@needs_annotations
@pytest.mark.slow
def test_cli_convert_and_train(tmp_path):
    write_partitions(tmp_path / "raw", num_partitions=1, sessions_per_partition=120, seed=4)
    run = [sys.executable, "-m", "ultr"]
    done = subprocess.run([*run, "baidu", "convert", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                           "--annotations", str(ANNOTATIONS), "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "120 sessions read" in done.stdout
    bad = subprocess.run([*run, "baidu", "convert", "--raw", str(tmp_path / "nothing"), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such directory" in bad.stderr and "Traceback" not in bad.stderr


@needs_annotations
@pytest.mark.parametrize("learner", ["dla", "rem", "two-tower", "paird"])
@pytest.mark.slow
def test_every_click_learner_trains_on_the_replayed_log(converted, learner):
    from simulators.datasets import load_dataset
    from ultr.training import TrainConfig, train

    root, _, _ = converted
    dataset = load_dataset(f"baidu:{root / 'out'}")
    result = train(root / "out" / "logs", dataset, TrainConfig(learner=learner, max_steps=20, eval_every=10),
                   progress=False)
    assert np.isfinite(result.test["dcg@10"]) and result.steps == 20


@needs_annotations
@pytest.mark.slow
def test_ultr_run_replays_a_baidu_log(converted, tmp_path):
    from ultr.experiment import run_experiment

    root, _, summary = converted
    config = {"name": "baidu", "data": f"baidu:{root / 'out'}", "logs": str(root / "out" / "logs"),
              "learners": ["naive", "ips"], "seeds": [0], "estimators": ["em"],
              "metrics": ["dcg@10", "ndcg@10"], "training": {"propensities": "em", "epochs": 1}}
    frame = run_experiment(config, out_root=tmp_path, progress=False)
    assert set(frame["learner"]) == {"naive", "ips"}
    assert (frame["sessions"] == summary["total"]["sessions_kept"]).all()
    with pytest.raises(Exception, match="simulation: has no effect when logs are replayed"):
        run_experiment({**config, "simulation": {"eta": 2.0}}, out_root=tmp_path, progress=False)


def write_feather_release(directory: Path, num_queries: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """Click and annotation files in the layout of Hager et al.'s Feather release (one row per query)."""
    import hashlib

    import pyarrow.feather as feather

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)

    def table(with_clicks: bool):
        rows = {name: [] for name in ["query_md5", "url_md5", "click", "position", "media_type", "displayed_time",
                                      "serp_height", "slipoff_count_after_click", "label", *FEATURE_NAMES,
                                      "query_document_embedding"]}
        for q in range(num_queries):
            n = int(rng.integers(5, 11))
            rows["query_md5"].append(hashlib.md5(f"q{q}".encode()).hexdigest())
            rows["url_md5"].append([hashlib.md5(f"q{q}-d{d}".encode()).hexdigest() for d in range(n)])
            rows["click"].append(rng.integers(0, 2, n).tolist())
            rows["position"].append(list(range(1, n + 1)))
            rows["media_type"].append(rng.integers(0, 5, n).tolist())
            rows["displayed_time"].append(rng.random(n).tolist())
            rows["serp_height"].append(rng.integers(100, 300, n).tolist())
            rows["slipoff_count_after_click"].append(rng.integers(0, 3, n).tolist())
            rows["label"].append(rng.integers(0, 5, n).tolist())
            for name in FEATURE_NAMES:
                rows[name].append(rng.random(n).astype(np.float32).tolist())
            rows["query_document_embedding"].append(rng.normal(size=(n, 768)).astype(np.float16).tolist())
        columns = {k: v for k, v in rows.items() if with_clicks or k not in ("click", "position", "media_type",
                                                                              "displayed_time", "serp_height",
                                                                              "slipoff_count_after_click", "url_md5")}
        if not with_clicks:
            columns["frequency_bucket"] = rng.integers(0, 10, num_queries).tolist()
        else:
            columns.pop("label")
        types = {"query_document_embedding": pa.list_(pa.list_(pa.float16()))}
        return pa.table({k: pa.array(v, types.get(k)) for k, v in columns.items()})

    clicks = directory / "clicks"
    clicks.mkdir(exist_ok=True)
    feather.write_feather(table(True), clicks / "part-0.feather")
    feather.write_feather(table(False), directory / "annotations.feather")
    return clicks, directory / "annotations.feather"


@pytest.mark.slow
def test_feather_release_with_embeddings(tmp_path):
    from simulators.baidu_convert import convert_feather
    from simulators.datasets import load_dataset
    from ultr.training import TrainConfig, train

    clicks, annotations = write_feather_release(tmp_path / "release")
    summary = convert_feather(clicks, tmp_path / "out", annotations=annotations)
    assert summary["total"]["sessions"] == 40
    log = read_click_log(tmp_path / "out" / "logs")
    source = pa.ipc.open_file(clicks / "part-0.feather").read_all().to_pylist()
    for row, query in enumerate(source):
        mask = log.mask[row]
        assert log.clicks[row][mask].tolist() == [bool(c) for c in query["click"]]
        assert (np.flatnonzero(mask) + 1).tolist() == query["position"]
    sizes = {"lexical": 12, "embedding": 768, "lexical+embedding": 780}
    for features, width in sizes.items():
        dataset = load_dataset(f"baidu:{tmp_path / 'out'}:{features}")
        assert dataset.num_features == width
    dataset = load_dataset(f"baidu:{tmp_path / 'out'}:embedding")
    first = np.asarray(source[0]["query_document_embedding"][0], np.float16).astype(np.float32)
    query = stable_id(pa.array([source[0]["query_md5"]]))[0]
    row = np.flatnonzero((dataset.train.query_ids == query)
                         & (dataset.train.doc_ids == doc_id_of(source[0]["url_md5"][0])))
    assert row.size == 1 and np.array_equal(dataset.train.features[row[0]], first)
    result = train(tmp_path / "out" / "logs", dataset, TrainConfig(learner="naive", max_steps=5, eval_every=5),
                   progress=False)
    assert np.isfinite(result.test["dcg@10"])
    with pytest.raises(BaiduFormatError, match="no query-document embeddings"):
        converted_raw = tmp_path / "raw"
        write_partitions(converted_raw, 1, 30)
        convert(converted_raw, tmp_path / "rawout", annotations=ANNOTATIONS if ANNOTATIONS.exists() else None)
        if not ANNOTATIONS.exists():
            raise BaiduFormatError("no query-document embeddings (annotation sample missing)")
        load_dataset(f"baidu:{tmp_path / 'rawout'}:embedding")


@needs_annotations
@pytest.mark.slow
def test_bm25_baseline_ranks_by_the_feature(converted, tmp_path):
    from simulators.datasets import load_dataset
    from ultr.training import TrainConfig, train

    root, _, _ = converted
    dataset = load_dataset(f"baidu:{root / 'out'}")
    result = train(None, dataset, TrainConfig(learner="feature", learner_options={"feature": 0}), progress=False)
    # DCG@10 of ranking each test query's documents by bm25, written out here (ties by dataset order)
    test = dataset.test
    values = []
    for q in range(test.num_queries):
        rows = np.arange(test.query_offsets[q], test.query_offsets[q + 1])
        if not (test.labels[rows] > 0).any():
            continue
        order = sorted(range(len(rows)), key=lambda i: (-test.features[rows[i], 0], i))[:10]
        values.append(sum((2.0 ** test.labels[rows[i]] - 1) / math.log2(r + 2) for r, i in enumerate(order)))
    assert result.test["dcg@10"] == pytest.approx(np.mean(values), rel=1e-5)
    with pytest.raises(ValueError, match="--feature 99"):
        train(None, dataset, TrainConfig(learner="feature", learner_options={"feature": 99}), progress=False)
