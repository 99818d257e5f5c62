"""A third-party caption backend, as another package would ship it (registered in its dist-info entry points).

It depends only on the public interface: the facts of each context.
"""

from __future__ import annotations

import hashlib


class EchoCaptioner:
    """Captions that repeat a few facts; the simple ``caption`` interface only."""

    name = "echo"
    prompt_sha256 = hashlib.sha256(b"echo captions v1").hexdigest()

    def __init__(self, seed: int = 0, model: str | None = None) -> None:
        self.seed = seed
        self.model = model or "echo-1"

    def caption(self, contexts, n):
        out = []
        for context in contexts:
            facts = context.to_facts()
            where = facts["location"]["country"] or "somewhere"
            out.append([f"Echo {k + 1}/{n} (seed {self.seed}): a chip in {where}." for k in range(n)])
        return out
