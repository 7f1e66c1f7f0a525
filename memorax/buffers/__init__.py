"""Episode replay buffers: contiguous, episode-aware sequences, sampled uniformly or by priority."""

from memorax.buffers.episode_buffer import (
    EpisodeBuffer,
    EpisodeBufferState,
    EpisodeSample,
    compute_importance_weights,
    make_episode_buffer,
    make_prioritised_episode_buffer,
    sequence_priority,
)

__all__ = [
    "EpisodeBuffer",
    "EpisodeBufferState",
    "EpisodeSample",
    "compute_importance_weights",
    "make_episode_buffer",
    "make_prioritised_episode_buffer",
    "sequence_priority",
]
