"""Per-request values that agent clients put at the head of the system prompt. Left in, they change the first
tokens of every prompt and defeat the prefix cache; Claude Code's billing header is one. (No MLX imports here:
the settings module reads this.)"""

DEFAULT_VOLATILE_PATTERNS: tuple[str, ...] = (r"(?m)^x-anthropic-billing-header:[^\n]*\n?",)
