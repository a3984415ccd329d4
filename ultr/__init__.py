"""ultr: unbiased learning to rank in JAX (learners, experiments, command line)."""

__version__ = "0.1.0"
