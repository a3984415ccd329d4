"""Uniform draws for the samplers.

JAX's default threefry layout (``jax_threefry_partitionable``) computes one threefry2x32 hash per
32-bit output and XORs the hash's two words into one. :func:`uniform` keeps both words of every
hash (element ``e`` is word ``e % 2`` of the hash of counter ``e // 2``), so it draws twice the
uniforms per hash. Like JAX's layout, the value of element ``e`` depends on the key and ``e`` alone:
a longer draw extends a shorter one, whatever the shape. Other key implementations (rbg,
unsafe_rbg) and legacy ``uint32[2]`` keys go to :func:`jax.random.uniform`.

Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), define threefry2x32.
"""

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.random import threefry2x32_p

__all__ = ["uniform"]

_FLOAT32_ONE = 0x3F800000


def _is_threefry(key) -> bool:
    return (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
            and str(jax.random.key_impl(key)) == "threefry2x32")


def uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Uniforms in ``[0, 1)`` of ``shape``, from one typed key.

    Args:
      key: a typed key of shape ``()`` (``jax.random.key(seed)``).
      shape: the output shape.
      dtype: float32 takes the fast path; other dtypes go to :func:`jax.random.uniform`.

    Returns:
      ``dtype[*shape]``; 23 random mantissa bits per float32, as :func:`jax.random.uniform`.

    >>> u = uniform(jax.random.key(0), (3, 4))
    >>> bool(((u >= 0) & (u < 1)).all()), bool((uniform(jax.random.key(0), (12,)) == u.ravel()).all())
    (True, True)
    """
    shape = tuple(shape)
    size = math.prod(shape)
    if not _is_threefry(key) or jnp.dtype(dtype) != jnp.float32 or size >= 2**32:
        return jax.random.uniform(key, shape, dtype)
    if size == 0:
        return jnp.zeros(shape, dtype)
    pairs = -(-size // 2)
    words = jax.random.key_data(key)
    counter = lax.iota(jnp.uint32, pairs)
    zeros = jnp.zeros_like(counter)
    # scalar key words: XLA's CPU lowering is twice as fast as with key words broadcast to the counters' shape
    first, second = threefry2x32_p.bind(words[0], words[1], zeros, counter)
    bits = jnp.stack([first, second], axis=-1).reshape(-1)[:size].reshape(shape)
    # 23 high bits as the mantissa of a float in [1, 2), minus 1: the construction of jax.random.uniform
    floats = lax.bitcast_convert_type((bits >> jnp.uint32(9)) | jnp.uint32(_FLOAT32_ONE), jnp.float32) - 1.0
    return floats
