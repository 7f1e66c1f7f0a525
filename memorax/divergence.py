"""Divergence as news: a flag per round, computed inside the compiled run, that says whether
anything the round produced is NaN or infinite; read after the run to name each diverged seed and
the round where it first went wrong."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def all_finite(*trees: Any) -> jax.Array:
    """True where every floating-point leaf of ``trees`` holds only finite values (a scalar)."""
    leaves = [x for x in jax.tree.leaves(trees) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.array([jnp.isfinite(x).all() for x in leaves] + [True]).all()


def first_nonfinite(finite: Any) -> dict[int, int]:
    """{seed: index of its first round whose flag is False} from ``finite`` [seeds, rounds];
    seeds that never diverged are left out."""
    finite = np.asarray(finite, bool)
    return {seed: int(np.argmin(row)) for seed, row in enumerate(finite) if not row.all()}


def with_evaluation(metrics: dict[str, Any], returns: jax.Array, finished: jax.Array) -> dict:
    """``metrics`` (one row per round, with a ``finite`` flag) of a period that ends with an
    evaluation: the period's last round is also marked non-finite if a finished evaluation
    episode's return is NaN or inf (an unfinished one holds no return)."""
    finite = metrics["finite"]
    evaluation = jnp.all(jnp.isfinite(returns) | ~finished)
    return {**metrics, "finite": finite.at[-1].set(finite[-1] & evaluation)}
