"""Regenerate tests/fixtures/minilm_reference.json: all-MiniLM-L6-v2 vectors from PyTorch, the reference.

It needs torch and transformers, which the project never depends on, so it runs in a throwaway venv.
The fixture in the repo was made exactly like this (torch 2.13.0+cpu, transformers 5.23.0, numpy 2):

    .venv/bin/python -c "from pathlib import Path; from mlx_manager.manager.minilm import ensure_minilm; \
        print(ensure_minilm(Path('.cache/test-assets/embedding-models'), Path('.cache/test-assets')))"
    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch==2.13.0 transformers numpy
    /tmp/refvenv/bin/python scripts/minilm_reference.py .cache/test-assets/embedding-models/all-MiniLM-L6-v2

It does what sentence-transformers does for this model (modules.json: Transformer with max_seq_length 256,
mean pooling, Normalize): AutoTokenizer with truncation at 256, AutoModel, attention-masked mean of the last
hidden states, L2 normalization. Vectors are rounded to 6 decimals.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

MAX_SEQ_LENGTH = 256
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "minilm_reference.json"
_LONG_WORDS = (
    "Embedding models map text to points in a vector space so that texts with similar meaning end up close "
    "together, which lets search engines, recommendation systems and retrieval augmented generation find "
    "relevant passages by comparing vectors instead of matching keywords."
)
INPUTS = [
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?",
    "bank",
    "Le café est délicieux à Paris, n'est-ce pas ?",
    "Überprüfung der Größe: Straße, Mädchen, Öl und Äpfel.",
    "東京は日本の首都です。Москва — столица России.",
    "Emoji 🚀🔥 and symbols ©®™ — “curly quotes” and tabs\tand\nnewlines.",
    # About 240 tokens: just under the 256-token limit.
    " ".join([_LONG_WORDS] * 5),
    # Well over 256 tokens: sentence-transformers keeps the first 256 (with [CLS] and [SEP]).
    " ".join([_LONG_WORDS] * 9) + " This tail is cut off and must not change the vector.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModel.from_pretrained(args.model_dir).eval()
    batch = tokenizer(INPUTS, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    vectors = F.normalize(mean, p=2, dim=1)
    untruncated = [len(ids) for ids in tokenizer(INPUTS)["input_ids"]]
    data = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "generated_with": f"torch {torch.__version__}, transformers {__import__('transformers').__version__}",
        "max_seq_length": MAX_SEQ_LENGTH,
        "items": [
            {
                "input": text,
                "tokens": int(batch["attention_mask"][i].sum()),
                "untruncated_tokens": untruncated[i],
                "embedding": [round(float(x), 6) for x in vectors[i]],
            }
            for i, text in enumerate(INPUTS)
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # One line per vector keeps the file readable and its diffs small.
    text = json.dumps(data, ensure_ascii=False, indent=1)
    text = re.sub(r"\[\s+(-?\d[^\]]*?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {len(INPUTS)} vectors to {args.out}: tokens {[item['tokens'] for item in data['items']]}")


if __name__ == "__main__":
    main()
