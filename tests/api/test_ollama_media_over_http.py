"""Ollama's images and embeddings through the official client: base64 images reach a vision model as they do
through /v1 (same greedy answer, the image's tokens counted), and /api/embed and /api/embeddings give the
vectors /v1/embeddings gives."""

from __future__ import annotations

import base64

import numpy as np
import ollama
import openai
import pytest

from mlx_manager.testing.server import ServerProcess
from mlx_manager.testing.tiny_vlm import NAME as VLM
from mlx_manager.testing.tiny_vlm import image_tokens
from tests.api.test_vision import QUESTION, chat, png

EMBEDDER = "all-MiniLM-L6-v2"
TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply today."]


def test_a_base64_image_reaches_the_vision_model_as_through_v1(vision_server: ServerProcess) -> None:
    ol = ollama.Client(host=vision_server.base_url, timeout=120)
    v1 = openai.OpenAI(base_url=f"{vision_server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    image = png(56, 56, seed=3)
    opts = {"temperature": 0, "num_predict": 8}
    text_only = ol.chat(model=VLM, messages=[{"role": "user", "content": QUESTION}], options=opts)
    seen = ol.chat(
        model=VLM, messages=[{"role": "user", "content": QUESTION, "images": [base64.b64decode(image)]}], options=opts
    )
    assert seen.prompt_eval_count == (text_only.prompt_eval_count or 0) + 2 + image_tokens(56, 56)
    same = v1.chat.completions.create(model=VLM, messages=chat(image), max_tokens=8, temperature=0)
    assert seen.message.content == same.choices[0].message.content
    generated = ol.generate(model=VLM, prompt=QUESTION, images=[image], options=opts)
    assert generated.response == seen.message.content
    with pytest.raises(ollama.ResponseError) as err:
        ol.generate(model=VLM, prompt=QUESTION, images=["bm90IGFuIGltYWdl"], options=opts)
    assert err.value.status_code == 400 and "image" in err.value.error


def test_embed_and_embeddings_give_the_v1_vectors(
    embedding_server: ServerProcess, embedding_client: openai.OpenAI
) -> None:
    ol = ollama.Client(host=embedding_server.base_url, timeout=120)
    out = ol.embed(model=EMBEDDER, input=TEXTS)
    reference = embedding_client.embeddings.create(model=EMBEDDER, input=TEXTS, encoding_format="float")
    assert np.allclose(out.embeddings, [d.embedding for d in reference.data], atol=1e-6)
    assert out.prompt_eval_count == reference.usage.prompt_tokens and out.total_duration
    one = ol.embeddings(model=EMBEDDER, prompt=TEXTS[0])
    assert np.allclose(one.embedding, out.embeddings[0], atol=1e-6)
    short = ol.embed(model=EMBEDDER, input=TEXTS[0], dimensions=64)
    assert len(short.embeddings[0]) == 64 and np.isclose(np.linalg.norm(short.embeddings[0]), 1.0, atol=1e-5)
    with pytest.raises(ollama.ResponseError) as err:
        ol.embed(model="tiny-llama", input="x")
    assert err.value.status_code == 400 and "embedding" in err.value.error
