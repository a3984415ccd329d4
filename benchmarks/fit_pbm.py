"""PBM fitting benchmark: 1M simulated sessions (1,000 queries x 10 documents).

Run by hand: ``python benchmarks/fit_pbm.py``. Goals: EM to convergence in under 10 s;
held-out perplexity within 0.001 of the generating model's.
"""

import argparse
import time

import numpy as np

from click_models.evaluation import evaluate
from click_models.fitting import assemble, fit_em
from simulators import simulate_toy_log, toy_session_batches, true_parameters


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1_000)
    args = parser.parse_args()
    queries, docs = args.queries, 10
    truth = true_parameters("pbm", queries, docs, seed=0)
    start = time.perf_counter()
    train = toy_session_batches(simulate_toy_log("pbm", truth, queries, docs, args.sessions, seed=1), docs, 250_000)
    held_out = toy_session_batches(simulate_toy_log("pbm", truth, queries, docs, 200_000, seed=2), docs, 100_000)
    print(f"simulated {args.sessions:,} + 200,000 held-out sessions in {time.perf_counter() - start:.2f}s")

    start = time.perf_counter()
    result = fit_em("pbm", train, queries * docs, docs, max_iterations=5000)
    elapsed = time.perf_counter() - start
    print(f"EM: {len(result.history)} iterations, converged={result.converged}, {elapsed:.2f}s "
          f"(goal < 10 s: {'ok' if elapsed < 10 else 'MISSED'})")

    fitted = evaluate(result.click_model, held_out)
    true = evaluate(lambda b: assemble("pbm", truth, b), held_out)
    gap = fitted["perplexity"] - true["perplexity"]
    print(f"held-out perplexity: fitted {fitted['perplexity']:.5f}, generating model {true['perplexity']:.5f}, "
          f"gap {gap:+.5f} (goal |gap| < 0.001: {'ok' if abs(gap) < 1e-3 else 'MISSED'})")
    exam = result.tables["examination"]
    error = np.abs(exam / exam[0] - truth["examination"] / truth["examination"][0]).max()
    print(f"max error of examination normalised at rank 1: {error:.4f}")


if __name__ == "__main__":
    main()
