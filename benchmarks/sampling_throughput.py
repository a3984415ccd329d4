"""Sampling throughput of every click model: sessions per second, 10 positions.

Run by hand: ``python benchmarks/sampling_throughput.py [--sessions N]``.
Targets on a 2-core CPU: >= 3M sessions/s for PBM and Cascade, >= 1.5M for DBN and UBM.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from click_models import CCM, DBN, DCM, PBM, SDBN, UBM, Cascade, TrustBias
from simulators import DLA_EXAMINATION


def build(name, attraction, satisfaction, K):
    if name == "pbm":
        return PBM(attraction, DLA_EXAMINATION)
    if name == "cascade":
        return Cascade(attraction)
    if name == "dbn":
        return DBN(attraction, satisfaction, 0.9)
    if name == "sdbn":
        return SDBN(attraction, satisfaction)
    if name == "dcm":
        return DCM(attraction, np.linspace(0.9, 0.5, K))
    if name == "ubm":
        return UBM(attraction, np.tril(np.full((K, K), 0.7)) + 0.1)
    if name == "ccm":
        return CCM(attraction, 0.8, 0.5, 0.9)
    if name == "trust_bias":
        return TrustBias(DLA_EXAMINATION, np.full(K, 0.95), np.full(K, 0.1), attraction)
    raise KeyError(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    K, N = 10, args.sessions
    rng = np.random.default_rng(0)
    attraction = jnp.asarray(rng.uniform(0.05, 0.95, (N, K)), jnp.float32)
    satisfaction = jnp.asarray(rng.uniform(0.2, 0.8, (N, K)), jnp.float32)
    print(f"devices: {jax.devices()}; {N:,} sessions x {K} positions per call")
    targets = {"pbm": 3e6, "cascade": 3e6, "dbn": 1.5e6, "ubm": 1.5e6}
    for name in ["pbm", "cascade", "dbn", "sdbn", "dcm", "ubm", "ccm", "trust_bias"]:
        sample = jax.jit(lambda a, s, key, name=name: build(name, a, s, K).sample(key))
        sample(attraction, satisfaction, jax.random.key(0)).block_until_ready()
        times = []
        for i in range(args.repeats):
            start = time.perf_counter()
            sample(attraction, satisfaction, jax.random.key(i + 1)).block_until_ready()
            times.append(time.perf_counter() - start)
        rate = N / min(times)
        target = targets.get(name)
        verdict = "" if target is None else f"  (target {target / 1e6:.1f}M: {'ok' if rate >= target else 'MISSED'})"
        print(f"{name:>10}: {rate / 1e6:6.2f}M sessions/s{verdict}")


if __name__ == "__main__":
    main()
