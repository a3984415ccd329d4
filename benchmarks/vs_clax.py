"""ultr against CLAX, a bare numpy sampler and the truth: sampling and fitting, side by side in one run.

Run by hand from the repository root::

    python benchmarks/vs_clax.py --setup      # once: CLAX in its own environment (benchmarks/.clax-venv)
    python benchmarks/vs_clax.py              # sampling and fitting, 3 rounds, medians

CLAX (clax-models 0.1.1, Hager et al. 2025) needs ``jax==0.7.1``, so it lives in a separate virtual
environment: ``--setup`` creates it with ``python -m venv benchmarks/.clax-venv`` and installs
``clax-models==0.1.1 jax==0.7.1`` from PyPI (``--clax-python`` points at another interpreter). Without it
the CLAX columns are skipped with a message and the other comparisons still run.

The data: ``--pairs`` query-document pairs (``--queries`` queries of 10 documents) whose attraction and
satisfaction logits are drawn once; every session shows one query's 10 documents in a random order. Both
libraries gather their parameters from the same (query, document) table per session, as CLAX does
(``EmbeddingParameter``): CLAX's embedding tables are set to the same logits. Fitting: PBM on 1M sessions and
DBN on 800k sessions sampled from the truth, 10 % held out; ultr by EM with its defaults, CLAX by AdamW
(lr 0.003, batches of 1,024, early stopping on the held-out loss, patience 0 and min delta 1e-5: the
defaults of its ``Trainer`` and README). Both fitted models are scored by the same exact held-out
log-likelihood (ultr's ``log_prob``), per document shown.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_CLAX_VENV = HERE / ".clax-venv"
K = 10
MODELS = ("pbm", "cascade", "dbn", "ubm")


def make_data(queries: int, sessions: int, seed: int = 0) -> dict:
    """Parameter tables and sessions: ids ``[N, K]`` in 1..pairs (0 = CLAX's padding row), positions 1..K."""
    rng = np.random.default_rng(seed)
    pairs = queries * K
    attraction = np.concatenate([[0.0], rng.normal(-1.0, 1.2, pairs)]).astype(np.float32)
    satisfaction = np.concatenate([[0.0], rng.normal(-0.5, 1.0, pairs)]).astype(np.float32)
    # Examination (PBM) 1 / rank; UBM's by (rank, rank of the last click), 1 / (rank - last click).
    examination = np.log(1.0 / np.arange(1, K + 1)) - np.log1p(-np.minimum(1.0 / np.arange(1, K + 1), 0.999))
    examination = np.concatenate([[0.0], examination]).astype(np.float32)
    ubm = np.zeros((K + 1, K + 1), np.float32)  # [position 1..K, last clicked position 0..K]
    for r in range(1, K + 1):
        for last in range(0, r):
            p = min(0.95, 1.0 / (r - last))
            ubm[r, last] = np.log(p) - np.log1p(-p)
    query = rng.integers(0, queries, sessions)
    order = np.argsort(rng.random((sessions, K)), axis=1)
    ids = (query[:, None] * K + order + 1).astype(np.int32)
    positions = np.broadcast_to(np.arange(1, K + 1, dtype=np.int32), (sessions, K)).copy()
    return {"attraction": attraction, "satisfaction": satisfaction, "examination": examination, "ubm": ubm.ravel(),
            "ids": ids, "positions": positions, "continuation": np.float32(0.9)}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


# ---------------------------------------------------------------------- CLAX (runs in its own environment)
def clax_worker(data_path: str, task: str, rounds: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import clax

    data = dict(np.load(data_path))
    pairs = len(data["attraction"]) - 1

    def set_table(parameter, logits):
        parameter.baseline.value = jnp.zeros((1,), jnp.float32)
        parameter.embeddings.embedding.value = jnp.asarray(logits, jnp.float32).reshape(-1, 1)

    def build(name):
        rngs = nnx.Rngs(0)
        if name == "pbm":
            model = clax.PositionBasedModel(positions=K, query_doc_pairs=pairs, rngs=rngs)
            set_table(model.attraction, data["attraction"])
            set_table(model.examination, data["examination"])
        elif name == "cascade":
            model = clax.CascadeModel(query_doc_pairs=pairs, rngs=rngs)
            set_table(model.attraction, data["attraction"])
        elif name == "dbn":
            model = clax.DynamicBayesianNetwork(query_doc_pairs=pairs, rngs=rngs)
            set_table(model.attraction, data["attraction"])
            set_table(model.satisfaction, data["satisfaction"])
            model.continuation.weight.value = jnp.full((1,), np.log(9.0), jnp.float32)
        elif name == "ubm":
            model = clax.UserBrowsingModel(positions=K, query_doc_pairs=pairs, rngs=rngs)
            set_table(model.attraction, data["attraction"])
            table = np.zeros((K + 1) ** 2 + 1, np.float32)
            for r in range(1, K + 1):  # CLAX's index: position * K + last clicked position
                for last in range(0, r):
                    table[r * K + last] = data["ubm"][r * (K + 1) + last]
            set_table(model.examination, table)
        return model

    out = {"jax": jax.__version__}
    if task == "sampling":
        batch = {"query_doc_ids": jnp.asarray(data["ids"]), "positions": jnp.asarray(data["positions"]),
                 "mask": jnp.ones(data["ids"].shape, bool)}
        n = data["ids"].shape[0]
        for name in MODELS:
            model = build(name)
            graphdef, state = nnx.split(model)

            @jax.jit
            def sample(state, batch, key):
                return nnx.merge(graphdef, state).sample(batch, nnx.Rngs(key)).clicks

            sample(state, batch, jax.random.key(0)).block_until_ready()
            times = []
            for r in range(rounds):
                started = time.perf_counter()
                sample(state, batch, jax.random.key(r + 1)).block_until_ready()
                times.append(time.perf_counter() - started)
            clicks = np.asarray(sample(state, batch, jax.random.key(99)))
            out[name] = {"rate": n / float(np.median(times)), "ctr": clicks.mean(axis=0).tolist()}
        return out
    # fitting: task is "fit-pbm" or "fit-dbn"
    name = task.split("-")[1]
    clicks = np.load(data_path.replace(".npz", f"-{name}-clicks.npy"))
    train = int(0.9 * len(clicks))
    rngs = nnx.Rngs(0)
    if name == "pbm":
        model = clax.PositionBasedModel(positions=K, query_doc_pairs=pairs, rngs=rngs)
    else:
        model = clax.DynamicBayesianNetwork(query_doc_pairs=pairs, rngs=rngs)
    optimizer = nnx.Optimizer(model, optax.adamw(0.003), wrt=nnx.Param)

    def as_batch(lo, hi):
        return {"query_doc_ids": jnp.asarray(data["ids"][lo:hi]), "positions": jnp.asarray(data["positions"][lo:hi]),
                "mask": jnp.ones((hi - lo, K), bool), "clicks": jnp.asarray(clicks[lo:hi], jnp.float32)}

    @nnx.jit
    def train_step(model, optimizer, batch):
        loss, grads = nnx.value_and_grad(lambda m: m.compute_loss(batch).mean())(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def val_loss(model, batch):
        return model.compute_loss(batch, aggregate=False).sum()

    size = 1024
    starts = list(range(0, train - size + 1, size))  # full batches only: one compilation
    held = [as_batch(lo, min(lo + size * 64, len(clicks))) for lo in range(train, len(clicks), size * 64)]
    best, epochs, history = np.inf, 0, []
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    best_state = nnx.state(model, nnx.Param)
    for epoch in range(50):
        for lo in rng.permutation(starts):
            train_step(model, optimizer, as_batch(lo, lo + size))
        loss = float(sum(float(val_loss(model, b)) for b in held)) / ((len(clicks) - train) * K)
        epochs += 1
        history.append(loss)
        if loss < best - 1e-5:
            best = loss
            best_state = jax.tree.map(lambda x: x, nnx.state(model, nnx.Param))
        else:
            break
    seconds = time.perf_counter() - started
    nnx.update(model, best_state)
    ids = np.arange(pairs + 1)
    tables = {"attraction": np.asarray(model.attraction.prob({"query_doc_ids": jnp.asarray(ids)})).tolist()}
    if name == "pbm":
        tables["examination"] = np.asarray(model.examination.prob({"positions": jnp.arange(K + 1)})).tolist()
    else:
        tables["satisfaction"] = np.asarray(model.satisfaction.prob({"query_doc_ids": jnp.asarray(ids)})).tolist()
        tables["continuation"] = float(np.asarray(model.continuation.prob()).ravel()[0])
    out.update(seconds=seconds, epochs=epochs, tables=tables)
    return out


def run_clax(python: str, data_path: str, task: str, rounds: int) -> dict | None:
    command = [python, __file__, "--clax-worker", data_path, "--task", task, "--rounds", str(rounds)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if result.returncode != 0:
        print(f"CLAX {task} failed:\n{result.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- ultr and bare numpy
def ultr_sampling(data: dict, rounds: int) -> dict:
    import jax
    import jax.numpy as jnp

    from click_models import DBN, PBM, UBM, Cascade

    attraction = jnp.asarray(data["attraction"])
    satisfaction = jnp.asarray(data["satisfaction"])
    examination = jnp.asarray(data["examination"][1:])
    ubm = jnp.asarray(data["ubm"].reshape(K + 1, K + 1)[1:, :K])  # [rank, last click 0..K-1]
    ids = jnp.asarray(data["ids"])
    n = ids.shape[0]

    def model(name, ids):
        a = attraction[ids]
        if name == "pbm":
            return PBM.from_logits(attraction=a, examination=examination)
        if name == "cascade":
            return Cascade.from_logits(attraction=a)
        if name == "dbn":
            return DBN.from_logits(attraction=a, satisfaction=satisfaction[ids], continuation=jnp.log(9.0))
        # ultr's UBM examination [K, K] is indexed by (rank, rank of the last click, 0 = none)
        return UBM.from_logits(attraction=a, examination=ubm)

    out = {}
    for name in MODELS:
        sample = jax.jit(lambda ids, key, name=name: model(name, ids).sample(key))
        sample(ids, jax.random.key(0)).block_until_ready()
        times = []
        for r in range(rounds):
            started = time.perf_counter()
            sample(ids, jax.random.key(r + 1)).block_until_ready()
            times.append(time.perf_counter() - started)
        clicks = np.asarray(sample(ids, jax.random.key(99)))
        out[name] = {"rate": n / float(np.median(times)), "ctr": clicks.mean(axis=0).tolist()}
    return out


def numpy_pbm_sampling(data: dict, rounds: int) -> float:
    """The bare vectorised numpy PBM sampler: gather probabilities, one uniform per position, compare."""
    attraction = sigmoid(data["attraction"]).astype(np.float32)
    examination = sigmoid(data["examination"][1:]).astype(np.float32)
    ids = data["ids"]
    rng = np.random.default_rng(0)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        probs = attraction[ids] * examination
        clicks = rng.random(ids.shape, dtype=np.float32) < probs
        times.append(time.perf_counter() - started)
    assert clicks.shape == ids.shape
    return ids.shape[0] / float(np.median(times))


def ultr_fit(name: str, data: dict, clicks: np.ndarray) -> dict:
    import jax.numpy as jnp

    from click_models.fitting import SessionBatch, fit_em

    train = int(0.9 * len(clicks))
    ids = data["ids"] - 1
    batches = [SessionBatch(jnp.asarray(ids[lo:hi]), jnp.asarray(clicks[lo:hi]), jnp.ones((hi - lo, K), bool))
               for lo, hi in ((lo, min(lo + 100_000, train)) for lo in range(0, train, 100_000))]
    pairs = len(data["attraction"]) - 1
    fit_em(name, batches[:1], pairs, K, max_iterations=1)  # compile outside the timing
    started = time.perf_counter()
    result = fit_em(name, batches, pairs, K, max_iterations=1000)
    seconds = time.perf_counter() - started
    tables = result.tables
    passes = result.history[-1].get("passes", len(result.history))
    converted = {"attraction": np.concatenate([[0.5], tables["attraction"][:-1]])}
    if name == "pbm":
        converted["examination"] = np.concatenate([[1.0], tables["examination"]])
    else:
        converted["satisfaction"] = np.concatenate([[0.5], tables["satisfaction"][:-1]])
        converted["continuation"] = float(tables["continuation"])
    return {"seconds": seconds, "passes": passes, "tables": converted}


def held_out_log_likelihood(name: str, data: dict, clicks: np.ndarray, tables: dict) -> float:
    """Exact held-out log-likelihood per document shown, by ultr's log_prob, of the given probability tables."""
    import jax.numpy as jnp

    from click_models import DBN, PBM

    train = int(0.9 * len(clicks))
    ids = jnp.asarray(data["ids"][train:])
    c = jnp.asarray(clicks[train:])
    eps = 1e-7
    a = jnp.clip(jnp.asarray(tables["attraction"], jnp.float32)[ids], eps, 1 - eps)
    if name == "pbm":
        model = PBM(a, jnp.clip(jnp.asarray(tables["examination"][1:], jnp.float32), eps, 1 - eps))
    else:
        s = jnp.clip(jnp.asarray(tables["satisfaction"], jnp.float32)[ids], eps, 1 - eps)
        model = DBN(a, s, float(np.clip(tables["continuation"], eps, 1 - eps)))
    return float(jnp.sum(model.log_prob(c))) / (c.shape[0] * K)


def simulate_truth(name: str, data: dict, sessions: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    from click_models import DBN, PBM

    ids = jnp.asarray(data["ids"][:sessions])
    a = jnp.asarray(data["attraction"])[ids]
    if name == "pbm":
        model = PBM.from_logits(attraction=a, examination=jnp.asarray(data["examination"][1:]))
    else:
        model = DBN.from_logits(attraction=a, satisfaction=jnp.asarray(data["satisfaction"])[ids],
                                continuation=jnp.log(9.0))
    return np.asarray(model.sample(jax.random.key(12345)))


def truth_tables(name: str, data: dict) -> dict:
    tables = {"attraction": sigmoid(data["attraction"])}
    if name == "pbm":
        tables["examination"] = sigmoid(data["examination"])
    else:
        tables["satisfaction"] = sigmoid(data["satisfaction"])
        tables["continuation"] = 0.9
    return tables


def setup(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "clax-models==0.1.1", "jax==0.7.1"], check=True)
    print(f"CLAX installed in {venv}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="create the CLAX environment and stop")
    parser.add_argument("--clax-python", default=str(DEFAULT_CLAX_VENV / "bin" / "python"))
    parser.add_argument("--sessions", type=int, default=1_000_000, help="sessions per sampling call")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["sampling", "fitting"], default=None)
    parser.add_argument("--clax-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--task", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clax_worker:
        print(json.dumps(clax_worker(args.clax_worker, args.task, args.rounds)))
        return
    if args.setup:
        setup(DEFAULT_CLAX_VENV if args.clax_python == str(DEFAULT_CLAX_VENV / "bin" / "python")
              else Path(args.clax_python).parents[1])
        return
    have_clax = Path(args.clax_python).exists()
    if not have_clax:
        print(f"CLAX skipped: no interpreter at {args.clax_python} (python benchmarks/vs_clax.py --setup)")
    import jax

    print(f"devices: {jax.devices()}; jax {jax.__version__}; {os.cpu_count()} CPU cores; medians of {args.rounds} rounds")
    data = make_data(args.queries, args.sessions)
    with tempfile.TemporaryDirectory(prefix="ultr-vs-clax-") as work:
        data_path = str(Path(work) / "data.npz")
        np.savez(data_path, **data)
        if args.only in (None, "sampling"):
            ours = ultr_sampling(data, args.rounds)
            numpy_rate = numpy_pbm_sampling(data, args.rounds)
            theirs = run_clax(args.clax_python, data_path, "sampling", args.rounds) if have_clax else None
            print(f"\nsampling, {args.sessions:,} sessions x {K} positions, parameters gathered from a table of "
                  f"{len(data['attraction']) - 1:,} (query, document) pairs")
            print("| model | ultr | CLAX | ultr / CLAX | click rate at rank 1 (ultr, CLAX) |")
            print("| --- | --- | --- | --- | --- |")
            for name in MODELS:
                mine = ours[name]
                other = theirs[name] if theirs else None
                ratio = f"{mine['rate'] / other['rate']:.2f}x" if other else "-"
                clax_rate = f"{other['rate'] / 1e6:.2f}M/s" if other else "-"
                ctr = f"{mine['ctr'][0]:.4f}, {other['ctr'][0]:.4f}" if other else f"{mine['ctr'][0]:.4f}"
                print(f"| {name} | {mine['rate'] / 1e6:.2f}M/s | {clax_rate} | {ratio} | {ctr} |")
            print(f"| pbm, bare numpy | {numpy_rate / 1e6:.2f}M/s | | ultr / numpy {ours['pbm']['rate'] / numpy_rate:.2f}x | |")
        if args.only in (None, "fitting"):
            print("\nfitting, 10 % held out; log-likelihood per document shown (exact, ultr's log_prob)")
            print("| model | sessions | ultr EM | CLAX AdamW | ultr / CLAX time | held-out LL: truth, ultr, CLAX |")
            print("| --- | --- | --- | --- | --- | --- |")
            for name, sessions in (("pbm", 1_000_000), ("dbn", 800_000)):
                sessions = min(sessions, args.sessions)
                clicks = simulate_truth(name, data, sessions)
                np.save(data_path.replace(".npz", f"-{name}-clicks.npy"), clicks)
                fit_data = {**data, "ids": data["ids"][:sessions], "positions": data["positions"][:sessions]}
                mine = ultr_fit(name, fit_data, clicks)
                theirs = run_clax(args.clax_python, data_path, f"fit-{name}", 1) if have_clax else None
                truth = held_out_log_likelihood(name, fit_data, clicks, truth_tables(name, data))
                ll_mine = held_out_log_likelihood(name, fit_data, clicks, mine["tables"])
                if theirs:
                    ll_theirs = held_out_log_likelihood(name, fit_data, clicks, theirs["tables"])
                    print(f"| {name} | {sessions:,} | {mine['seconds']:.1f} s, {mine['passes']} passes | "
                          f"{theirs['seconds']:.1f} s, {theirs['epochs']} epochs | "
                          f"{theirs['seconds'] / mine['seconds']:.2f}x faster | "
                          f"{truth:.6f}, {ll_mine:.6f}, {ll_theirs:.6f} |", flush=True)
                else:
                    print(f"| {name} | {sessions:,} | {mine['seconds']:.1f} s, {mine['passes']} passes | - | - | "
                          f"{truth:.6f}, {ll_mine:.6f}, - |", flush=True)


if __name__ == "__main__":
    main()
