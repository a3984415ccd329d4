"""Training throughput of a counterfactual learner beside the machine's matmul throughput.

MLP [512, 256, 128] on 136 features, list size 10, batch 256 sessions (the issue's setting), IPS with the
softmax loss and AdamW. Prints queries (sessions) per second, the FLOP rate of the training step (forward
and backward of the dense layers: 3 x 2 x B x K x sum(fan_in x fan_out)) and the float32 matmul rate
measured in the same run; the goal is at least half of the matmul rate.

Run by hand: ``python benchmarks/train_throughput.py [--steps 200]``.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ultr.data import ClickBatch
from ultr.learners import IPS
from ultr.rankers import MLPRanker
from ultr.training import _train_step


def matmul_gflops(n=2048, repeats=10):
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    F, K, B, hidden = 136, 10, args.batch, (512, 256, 128)
    rng = np.random.default_rng(0)
    table = jnp.asarray(rng.normal(size=(100_000, F)), jnp.float32)
    learner = IPS(MLPRanker(F, hidden, rngs=nnx.Rngs(0)), K)
    optimizer = nnx.Optimizer(learner, optax.adamw(1e-3), wrt=nnx.Param)
    batches = [
        ClickBatch(jnp.asarray(rng.integers(0, 100_000, (B, K)), jnp.int32), jnp.asarray(rng.uniform(size=(B, K)) < 0.2),
                   jnp.ones((B, K), bool), jnp.asarray(rng.uniform(0.1, 1, (B, K)), jnp.float32))
        for _ in range(8)
    ]
    _train_step(learner, optimizer, table, batches[0]).block_until_ready()
    start = time.perf_counter()
    for step in range(args.steps):
        loss = _train_step(learner, optimizer, table, batches[step % 8])
    loss.block_until_ready()
    elapsed = time.perf_counter() - start
    steps_per_second = args.steps / elapsed
    sizes = [F, *hidden, 1]
    flops_per_step = 3 * 2 * B * K * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
    train_gflops = steps_per_second * flops_per_step / 1e9
    peak = matmul_gflops()
    print(f"devices: {jax.devices()}")
    print(f"training: {steps_per_second:.1f} steps/s = {steps_per_second * B:,.0f} queries/s, "
          f"{train_gflops:.1f} GFLOP/s")
    print(f"matmul (2048 x 2048, float32): {peak:.1f} GFLOP/s")
    print(f"training reaches {100 * train_gflops / peak:.0f}% of the matmul rate (goal >= 50%)")


if __name__ == "__main__":
    main()
