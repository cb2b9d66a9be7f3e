"""A per-sequence mlx-lm logits processor that keeps a sequence inside its grammar, token by token."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import cast

import llguidance
import mlx.core as mx
import numpy as np

log = logging.getLogger(__name__)

NEG_INF = float("-inf")


class GrammarProcessor:
    """Masks the logits of one sequence to the tokens its grammar allows next.

    Called by mlx-lm as ``processor(tokens, logits)``: `tokens` is the context (the prompt on the first call,
    then one more generated token per call) and `logits` is (1, vocab). Once the grammar is complete only the
    EOS/stop tokens stay allowed. If the matcher fails (a token it rejects, an internal error) the processor
    logs it and stops constraining: one bad sequence must not take the batch down with it.
    Inside BatchGenerator the processor has seen every token by the time `next()` returns it, so
    `is_finished()` after a response tells whether that token completed the grammar.
    """

    def __init__(
        self,
        matcher: llguidance.LLMatcher,
        tokenizer_vocab: int,
        vocab_size: int,
        eos_token_ids: Sequence[int],
        key: str = "",
        grammar_eos_ids: Sequence[int] = (),
    ) -> None:
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.eos_token_ids = tuple(eos_token_ids)
        self._eos_set = frozenset(self.eos_token_ids)
        # The tokenizer-level EOS ids llguidance allows when the grammar is complete, minus this sequence's own.
        self._foreign_eos = [t for t in grammar_eos_ids if t not in self._eos_set]
        self.key = key
        self.error: str | None = None
        self.mask_seconds = 0.0  # time spent advancing the matcher and building masks
        self.calls = 0
        self._prompt_len: int | None = None
        self._consumed = 0
        self._tok_vocab = tokenizer_vocab
        self._words = np.zeros((tokenizer_vocab + 31) // 32, dtype=np.int32)  # llguidance's packed bitmask, reused
        self._allowed = np.zeros(max(vocab_size, tokenizer_vocab), dtype=np.bool_)  # padded ids stay False
        self._eos_only: dict[int, mx.array] = {}

    # --- state the caller may ask about --------------------------------------------------------

    def is_accepting(self) -> bool:
        """The output so far is a complete match (stopping now would be valid)."""
        return self.error is None and self.matcher.is_accepting()

    def is_finished(self) -> bool:
        """Nothing but EOS may follow: the caller can end the sequence now."""
        return self.error is None and self.matcher.is_stopped()

    @property
    def active(self) -> bool:
        return self.error is None

    @property
    def generated_tokens(self) -> int:
        return self._consumed

    # --- the logits processor ------------------------------------------------------------------

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self.error is not None:
            return logits
        try:
            # Start the forward pass for these logits now, so it runs while we wait for the last token and
            # compute the mask (mlx evaluates on its own stream; llguidance drops the GIL).
            mx.async_eval(logits)
            new = self._new_tokens(tokens)  # waits for the previous step's sample: not our cost
            start = time.perf_counter()
            out = self._constrain(new, logits)
            self.mask_seconds += time.perf_counter() - start
        except Exception as exc:  # never let a grammar problem crash the batch
            self._fail(f"{type(exc).__name__}: {exc}", exc_info=True)
            out = logits
        self.calls += 1
        return out

    def _new_tokens(self, tokens: mx.array) -> list[int]:
        total = int(tokens.size)
        if self._prompt_len is None:
            self._prompt_len = total  # the first call sees only the prompt
            return []
        new = total - self._prompt_len - self._consumed
        if new <= 0:
            return []
        self._consumed += new
        return cast(list[int], tokens.reshape(-1)[total - new :].tolist())

    def _constrain(self, new: list[int], logits: mx.array) -> mx.array:
        for tid in new:
            # The step that returns a stop token still calls us with it; a complete grammar ends there.
            if tid in self._eos_set and self.matcher.is_accepting():
                continue
            if not self.matcher.consume_token(tid):
                self._fail(f"token {tid} rejected: {self.matcher.get_error()}")
                return logits
        width = int(logits.shape[-1])
        if self.matcher.is_stopped():
            return mx.where(self._eos_mask(width), logits, NEG_INF)
        self.matcher.unsafe_compute_mask_ptr(self._words.ctypes.data, self._words.size * self._words.itemsize)
        if self.matcher.is_error():
            self._fail(self.matcher.get_error())
            return logits
        allowed = self._unpack(width)
        if self.matcher.is_accepting():
            allowed[[t for t in self._foreign_eos if t < width]] = False
            allowed[self._eos_ids(width)] = True
        if not allowed.any():  # all -inf would turn into NaNs in the sampler
            self._fail("the grammar allows no token here")
            return logits
        return mx.where(mx.array(allowed), logits, NEG_INF)

    def _eos_ids(self, width: int) -> list[int]:
        return [t for t in self.eos_token_ids if t < width]

    def _unpack(self, width: int) -> np.ndarray:
        # Bit i of word w is id 32*w + i; the byte view keeps that order on little-endian hosts (x86, arm64).
        bits = np.unpackbits(self._words.view(np.uint8), bitorder="little")
        if self._allowed.size < width:
            self._allowed = np.zeros(width, dtype=np.bool_)
        n = min(self._tok_vocab, width)
        out = self._allowed[:width]
        out[:n] = bits[:n].view(np.bool_)
        out[n:] = False  # padded ids: also clears EOS ids set there by an earlier call
        return out

    def _eos_mask(self, width: int) -> mx.array:
        mask = self._eos_only.get(width)
        if mask is None:
            arr = np.zeros(width, dtype=np.bool_)
            arr[self._eos_ids(width)] = True
            mask = self._eos_only[width] = mx.array(arr)
        return mask

    def _fail(self, reason: str, exc_info: bool = False) -> None:
        self.error = reason
        log.warning(
            "constrained decoding stopped for one sequence (%s) after %d tokens: %s",
            self.key[:80],
            self._consumed,
            reason,
            exc_info=exc_info,
        )
