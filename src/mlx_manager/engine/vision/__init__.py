"""Vision-language models: detection on disk, loading with mlx-vlm, prompts with images, batched decoding with
image-feature and prefix reuse (one at a time for language models the batch cannot hold)."""
