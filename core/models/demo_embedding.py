"""The demo model's embedding: deterministic, local, and near for similar texts.

Word unigrams, word bigrams and character trigrams are hashed (BLAKE2b, so the result does
not depend on Python's per-process hash seed) into a fixed number of signed buckets and the
vector is L2-normalised. Texts that share words share buckets, so their cosine is high.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re

#: Dimensions when the caller does not ask for a number.
DEFAULT_DIMENSIONS = 256

_WORD = re.compile(r"\w+", re.UNICODE)


def _features(text: str) -> list[tuple[str, float]]:
    words = _WORD.findall(text.lower())
    feats = [(f"w:{w}", 1.0) for w in words]
    feats += [(f"b:{a} {b}", 0.5) for a, b in itertools.pairwise(words)]
    for w in words:
        padded = f"#{w}#"
        feats += [(f"c:{padded[i : i + 3]}", 0.25) for i in range(len(padded) - 2)]
    return feats


def embed_text(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """Embed one text into ``dimensions`` floats with unit L2 norm (all zeros for no words)."""
    vec = [0.0] * dimensions
    for feat, weight in _features(text or ""):
        digest = hashlib.blake2b(feat.encode("utf-8"), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dimensions
        sign = 1.0 if digest[4] & 1 else -1.0
        vec[bucket] += sign * weight
    norm = math.sqrt(sum(v * v for v in vec))
    return [v / norm for v in vec] if norm else vec


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
