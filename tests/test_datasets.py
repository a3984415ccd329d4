"""LETOR reading on the real shared data, malformed files, caching, normalisation, synthetic data, registry."""

import gzip
import hashlib
import zipfile

import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest
import rax

from conftest import shared
from simulators import registry
from simulators.datasets import (
    RankingData,
    cache_dir,
    load_dataset,
    load_letor_dataset,
    normalize_features,
    read_letor_cached,
    synthetic_dataset,
)
from simulators.letor import LetorFormatError, read_letor
from simulators.policies import train_linear_ranker
from ultr.cli import main


def test_mq2008_fold1_is_read_exactly():
    train = read_letor(shared("mq2008", "Fold1", "train.txt"))
    assert train.features.shape == (9630, 46)
    assert len(np.unique(train.query_ids)) == 471
    first = open(shared("mq2008", "Fold1", "train.txt")).readline()
    assert first.startswith("0 qid:10002 1:0.007477")
    assert train.query_ids[0] == 10002 and train.labels[0] == 0
    assert train.features[0, 0] == np.float32(0.007477) and train.features[0, 45] == np.float32(0.007042)
    dataset = load_letor_dataset(shared("mq2008", "Fold1"))
    assert (dataset.train.num_queries, dataset.vali.num_queries, dataset.test.num_queries) == (471, 157, 156)
    assert dataset.max_label == 2
    counts = np.bincount(np.concatenate([dataset.split(s).labels for s in ("train", "vali", "test")]))
    assert counts.tolist() == [12279, 2001, 931]  # the README's label counts for all 15,211 lines
    # queries without any relevant document are kept
    no_relevant = np.maximum.reduceat(dataset.train.labels, dataset.train.query_offsets[:-1]) == 0
    assert no_relevant.sum() > 0


@pytest.mark.parametrize("folder,files,features,queries", [
    ("yahoo-lightgbm-sample", ("train.txt",), 300, 201),
    ("mslr-web-sample", ("mslr_fold1_test_sample.txt",), 136, 18),
    ("ohsumed-letor1/Fold1", ("trainingset.txt",), 25, None),
    ("clueweb09-webis-testfolds", ("Fold1_test.txt",), None, None),
])
def test_other_shared_datasets_are_read(folder, files, features, queries):
    data = read_letor(shared(*folder.split("/"), *files))
    if features is not None:
        assert data.num_features == features
    if queries is not None:
        assert len(np.unique(data.query_ids)) == queries
    assert data.features.dtype == np.float32 and np.isfinite(data.features).all()
    lines = sum(1 for line in open(shared(*folder.split("/"), *files)) if line.split("#")[0].strip())
    assert len(data.labels) == lines  # nothing silently dropped


def test_yahoo_sparse_features_are_placed_by_id():
    path = shared("yahoo-lightgbm-sample", "train.txt")
    data = read_letor(path)
    tokens = open(path).readline().split("#")[0].split()[2:]
    row = np.zeros(300, np.float32)
    for token in tokens:
        key, value = token.split(":")
        row[int(key) - 1] = float(value)
    np.testing.assert_array_equal(data.features[0], row)


def test_fold_without_validation_file_keeps_every_training_query():
    # the Yahoo sample has train.txt and test.txt only: validation queries come out of train.txt
    # (80/20) and none of its 201 queries is dropped
    dataset = load_letor_dataset(shared("yahoo-lightgbm-sample"))
    assert dataset.train.num_queries + dataset.vali.num_queries == 201
    assert dataset.test.num_queries == 50
    assert 0.7 < dataset.train.num_queries / 201 < 0.9
    train_ids, vali_ids = set(dataset.train.query_ids), set(dataset.vali.query_ids)
    assert not train_ids & vali_ids


def test_ohsumed_fold_directory_with_letor1_names():
    dataset = load_letor_dataset(shared("ohsumed-letor1", "Fold1"))
    assert dataset.train.num_queries > 0 and dataset.vali.num_queries > 0 and dataset.test.num_queries > 0
    assert dataset.num_features == 25


@pytest.mark.parametrize("line,message", [
    ("x qid:1 1:0.5", "bad label 'x'"),
    ("1.5 qid:1 1:0.5", "bad label '1.5'"),
    ("1 1:0.5 2:0.3", "missing qid"),
    ("1 qid:a 1:0.5", "bad qid"),
    ("1 qid:1 1:abc", "non-numeric value 'abc'"),
    ("1 qid:1 1:0.5 1:0.7", "duplicate feature id 1"),
    ("1 qid:1 0:0.5", "ids start at 1"),
    ("1 qid:1 1:0.5 2", "bad feature '2'"),
    ("1 qid:1 1:nan", "non-finite value"),
])
def test_malformed_lines_are_reported_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text("0 qid:1 1:0.1 2:0.2 # fine\n\n# a comment line\n" + line + "\n")
    with pytest.raises(LetorFormatError, match=rf"bad.txt:4: .*{message}"):
        read_letor(path)


def test_edge_cases_gzip_unsorted_single_document_and_no_relevant(tmp_path):
    text = (
        "2 qid:3 1:1 3:0.5 #docid = a\n"
        "0 qid:1 2:7\n"           # single-document query, sparse, no relevant document
        "1 qid:3 1:0.25\n"        # qid 3 again after qid 1: unsorted
    )
    path = tmp_path / "edge.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    letor = read_letor(path)
    assert letor.query_ids.tolist() == [3, 1, 3] and letor.labels.tolist() == [2, 0, 1]
    np.testing.assert_array_equal(letor.features, [[1, 0, 0.5], [0, 7, 0], [0.25, 0, 0]])
    data = RankingData(letor.query_ids, letor.line_numbers, letor.labels, letor.features)
    assert data.unique_query_ids.tolist() == [1, 3] and data.list_sizes.tolist() == [1, 2]
    padded = data.padded()
    assert padded.mask.tolist() == [[True, False], [True, True]]
    assert padded.labels.tolist() == [[0, 0], [2, 1]]
    with pytest.raises(LetorFormatError, match="no such file"):
        read_letor(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(LetorFormatError, match="no data lines"):
        read_letor(tmp_path / "empty.txt")


def test_parquet_cache_round_trips():
    source = shared("mq2008", "Fold1", "vali.txt")
    first = read_letor_cached(source)
    cached = list((cache_dir() / "datasets").glob("vali-*.parquet"))
    assert len(cached) == 1
    second = read_letor_cached(source)  # from the cache
    for field in ("query_ids", "doc_ids", "labels", "features"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert pq.read_schema(cached[0]).field("features").type.list_size == 46


def test_normalisation():
    data = load_letor_dataset(shared("mslr-web-sample", "mslr_fold1_test_sample.txt")).train
    minmax = normalize_features(data, "minmax")
    lo = np.minimum.reduceat(minmax.features, minmax.query_offsets[:-1], axis=0)
    hi = np.maximum.reduceat(minmax.features, minmax.query_offsets[:-1], axis=0)
    assert np.all(lo == 0) and np.all((hi == 1) | (hi == 0))
    logged = normalize_features(data, "log1p")
    np.testing.assert_allclose(logged.features, np.sign(data.features) * np.log1p(np.abs(data.features)), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize_features(data, "zscore")


def _ndcg10(scores, padded):
    return float(rax.ndcg_metric(jnp.asarray(scores), jnp.asarray(padded.labels, jnp.float32),
                                 where=jnp.asarray(padded.mask), topn=10))


@pytest.mark.slow
def test_synthetic_dataset_is_deterministic_and_rewards_better_rankers():
    a, b = synthetic_dataset(seed=3), synthetic_dataset(seed=3)
    np.testing.assert_array_equal(a.train.features, b.train.features)
    assert not np.array_equal(synthetic_dataset(seed=4).train.labels, a.train.labels)
    custom = load_dataset("synthetic:queries=50,docs=7,features=9,seed=3")
    assert custom.num_features == 9 and set(custom.train.list_sizes) == {7}
    assert custom.train.num_queries + custom.vali.num_queries + custom.test.num_queries == 50
    with pytest.raises(ValueError, match="bad part 'colour=2'"):
        load_dataset("synthetic:colour=2")
    shares = np.bincount(a.train.labels, minlength=5) / a.train.num_documents
    assert shares[0] > 0.4 and shares[4] > 0.01 and a.max_label == 4
    test = a.test.padded()
    x = test.features
    truth = np.sin(2 * x[..., 0]) + x[..., 1] * x[..., 2] + 0.5 * x[..., 3] ** 2 - np.abs(x[..., 4]) + 0.5 * x[..., 5]
    w, mean, scale = train_linear_ranker(a.train, fraction=1.0, steps=300)
    linear = ((x - mean) / scale) @ w
    random = np.random.default_rng(0).normal(size=linear.shape)
    ndcg_random, ndcg_linear, ndcg_oracle = _ndcg10(random, test), _ndcg10(linear, test), _ndcg10(truth, test)
    assert ndcg_linear > ndcg_random + 0.02
    assert ndcg_oracle > ndcg_linear + 0.1  # the non-linear signal is out of a linear ranker's reach


def test_registry_lists_and_explains_licences(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("mq2007", "mq2008", "mslr-web10k", "mslr-web30k", "yahoo-set1", "yahoo-set2", "istella-s"):
        assert name in out
    assert main(["datasets", "download", "yahoo-set2"]) == 1
    err = capsys.readouterr().err
    assert "cannot be downloaded automatically" in err and "webscope" in err
    with pytest.raises(SystemExit) as unknown:  # a usage error: exit 2
        main(["datasets", "download", "nope"])
    assert unknown.value.code == 2 and "unknown dataset 'nope'" in capsys.readouterr().err
    with pytest.raises(registry.DownloadError, match="is not downloaded"):
        load_dataset("mslr-web10k")


def test_download_verifies_checksums_and_extracts(tmp_path, monkeypatch):
    fold = tmp_path / "archive" / "TOY" / "Fold1"
    fold.mkdir(parents=True)
    for split in ("train", "vali", "test"):
        (fold / f"{split}.txt").write_text("1 qid:1 1:0.5\n0 qid:1 1:0.1\n0 qid:2 1:0.3\n2 qid:2 1:0.9\n")
    archive = tmp_path / "toy.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in fold.iterdir():
            zf.write(file, f"TOY/Fold1/{file.name}")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    entry = registry.DatasetInfo("toy", "Toy", "2", 1, "0-2", "https://example.org", archive.as_uri(), "toy.zip",
                                 digest, ("TOY/Fold1",))
    monkeypatch.setitem(registry.DATASETS, "toy", entry)
    path = registry.download("toy", tmp_path / "data", progress=False)
    assert (path / "train.txt").exists() and registry.is_downloaded("toy", tmp_path / "data")
    assert load_dataset("toy", data_dir=tmp_path / "data").train.num_queries == 2
    bad = registry.DatasetInfo("bad", "Bad", "2", 1, "0-2", "https://example.org", archive.as_uri(), "toy.zip",
                               "0" * 64, ("TOY/Fold1",))
    monkeypatch.setitem(registry.DATASETS, "bad", bad)
    with pytest.raises(registry.DownloadError, match="differs from the expected"):
        registry.download("bad", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "bad" / "toy.zip").exists()
    with pytest.raises(registry.DownloadError, match="could not download"):
        registry.download("bad", tmp_path / "other", progress=False, url=(tmp_path / "missing.zip").as_uri())


def test_manually_placed_mq2008_is_verified_against_published_checksums(tmp_path, capsys):
    target = tmp_path / "data" / "mq2008" / "MQ2008"
    target.mkdir(parents=True)
    (target / "Fold1").symlink_to(shared("mq2008", "Fold1"))
    assert registry.verify_files("mq2008", tmp_path / "data") == []
    assert main(["datasets", "download", "mq2008", "--dir", str(tmp_path / "data")]) == 0
    assert "checksums match" in capsys.readouterr().out


@pytest.mark.slow
def test_a_fold_directory_with_descriptive_file_names_loads():
    from pathlib import Path

    from simulators.datasets import load_dataset

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "mslr-web-sample"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    data = load_dataset(str(path))  # mslr_fold1_{train,valid,test}_sample*.txt
    assert (data.train.num_queries, data.vali.num_queries, data.test.num_queries) == (53, 18, 18)
    assert data.max_label == 4 and data.num_features == 136
