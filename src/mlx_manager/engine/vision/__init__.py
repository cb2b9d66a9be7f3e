"""Vision-language models: detection on disk, loading with mlx-vlm, prompts with images, one-at-a-time decoding."""
