"""MLX Manager: serve and manage MLX language models."""

__version__ = "0.1.0"
