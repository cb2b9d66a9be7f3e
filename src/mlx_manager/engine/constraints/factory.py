"""Per-model grammar compiler: wraps the model's tokenizer for llguidance once and caches compiled grammars."""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import llguidance

from mlx_manager.engine.constraints.processor import GrammarProcessor
from mlx_manager.engine.constraints.specs import (
    ANY_OBJECT,
    ConstraintError,
    ConstraintSpec,
    FramedSpec,
    JsonObjectSpec,
    JsonOptions,
    JsonSchemaSpec,
    Normalized,
    ToolCallSpec,
    framed_lark,
    lark_literal,
    normalize,
    spec_key,
    tool_call_lark,
)

log = logging.getLogger(__name__)

_UNIMPLEMENTED = re.compile(r"Unimplemented keys: \[([^\]]*)\]")
_UNKNOWN_FORMAT = re.compile(r"Unknown format: (\S+)")


@dataclass(frozen=True, eq=False)
class Grammar:
    """A compiled constraint; cheap to turn into per-sequence matchers (a deep copy of `template`)."""

    key: str
    source: str  # the llguidance grammar text, for logs and debugging
    template: llguidance.LLMatcher = field(repr=False)
    warnings: tuple[str, ...] = ()


class ConstraintFactory:
    """Built once per loaded model (wrapping the tokenizer costs ~0.1-1 s for a real vocabulary).

    `vocab_size` is the width of the model's logits, which may exceed the tokenizer's (padded lm_head):
    ids past the tokenizer are never allowed. `eos_token_ids` are the model's stop tokens, the ones the
    grammar allows (and forces) once it is complete. Thread-safe.
    """

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        eos_token_ids: Iterable[int],
        *,
        cache_size: int = 128,
        json_options: JsonOptions | None = None,
    ) -> None:
        self.eos_token_ids = tuple(sorted(set(eos_token_ids)))
        if not self.eos_token_ids:
            raise ValueError("constrained decoding needs at least one EOS/stop token id")
        self.vocab_size = vocab_size
        self.json_options = json_options or JsonOptions()
        backend = _backend_json(tokenizer)
        self.ll_tokenizer = llguidance.LLTokenizer(backend, eos_token=list(self.eos_token_ids))
        self.special_tokens = self._special_tokens(backend)
        self._cache: OrderedDict[str, Grammar] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def for_model(cls, lm: Any, **kwargs: Any) -> ConstraintFactory:
        """From an engine LoadedModel (its tokenizer, vocab_size and stop_token_ids)."""
        return cls(lm.tokenizer, lm.vocab_size, lm.stop_token_ids, **kwargs)

    def compile(self, spec: ConstraintSpec) -> Grammar:
        """Compile (or fetch from the LRU cache). Raises ConstraintError for what cannot be enforced."""
        norm = normalize(spec)
        key = spec_key(norm)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        grammar = self._compile(norm, key)  # outside the lock: llguidance compiles without the GIL
        with self._lock:
            self._cache[key] = grammar
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return grammar

    def processor(self, spec: ConstraintSpec | Grammar, eos_token_ids: Iterable[int] | None = None) -> GrammarProcessor:
        """A fresh per-sequence logits processor; `eos_token_ids` defaults to the model's stop tokens."""
        grammar = spec if isinstance(spec, Grammar) else self.compile(spec)
        eos = tuple(eos_token_ids) if eos_token_ids is not None else self.eos_token_ids
        return GrammarProcessor(
            grammar.template.deep_copy(),
            self.ll_tokenizer.vocab_size,
            self.vocab_size,
            eos,
            key=grammar.key,
            grammar_eos_ids=self.eos_token_ids,
        )

    def processor_from_source(self, source: str, key: str = "") -> GrammarProcessor:
        """A processor for a grammar compiled (and checked) elsewhere from its `Grammar.source`: a distributed
        model's rank 0 follows the grammar the server compiled for the request."""
        matcher = llguidance.LLMatcher(self.ll_tokenizer, source, log_level=0)
        if matcher.is_error():
            raise ConstraintError(f"The grammar cannot be enforced: {matcher.get_error()}", param=None)
        return self.processor(Grammar(key=key, source=source, template=matcher))

    def cache_info(self) -> tuple[int, int]:
        with self._lock:
            return len(self._cache), self._cache_size

    # --- internals ----------------------------------------------------------------------------

    def _compile(self, spec: Normalized, key: str) -> Grammar:
        opts = self.json_options.as_dict()

        def literal(text: str) -> str:
            return lark_literal(text, self.special_tokens)

        try:
            if isinstance(spec, JsonObjectSpec):
                source = llguidance.LLMatcher.grammar_from_json_schema(dict(ANY_OBJECT), overrides=opts)  # type: ignore[arg-type]
            elif isinstance(spec, JsonSchemaSpec):
                schema = copy.deepcopy(dict(spec.schema))
                source = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=opts)  # type: ignore[arg-type]
            elif isinstance(spec, ToolCallSpec):
                source = llguidance.LLMatcher.grammar_from_lark(tool_call_lark(spec, self.json_options, literal))
            elif isinstance(spec, FramedSpec):
                source = llguidance.LLMatcher.grammar_from_lark(framed_lark(spec, self.json_options, literal))
            else:
                source = llguidance.LLMatcher.grammar_from_lark(spec.grammar)
        except (TypeError, ValueError) as exc:  # llguidance: the schema is not a JSON object
            raise ConstraintError(f"Invalid constraint: {exc}") from exc
        matcher = llguidance.LLMatcher(self.ll_tokenizer, source, log_level=0)
        if matcher.is_error():
            raise _compile_error(matcher.get_error(), spec)
        self._check_satisfiable(spec, opts)
        warnings = tuple(matcher.get_grammar_warnings())
        if warnings:
            log.warning("grammar %s compiled with warnings: %s", key[:120], "; ".join(warnings))
        return Grammar(key=key, source=source, template=matcher, warnings=warnings)

    def _check_satisfiable(self, spec: Normalized, opts: dict[str, Any]) -> None:
        """A 400 for a schema no JSON value matches (a $ref that only refers to itself): such a grammar compiles,
        but allows no first token, and decoding would go on unconstrained instead."""
        for param, what, schema in _schemas(spec):
            source = llguidance.LLMatcher.grammar_from_json_schema(copy.deepcopy(dict(schema)), overrides=opts)  # type: ignore[arg-type]
            probe = llguidance.LLMatcher(self.ll_tokenizer, source, log_level=0)
            if probe.is_error() or probe.is_accepting():
                continue
            probe.compute_bitmask()
            if probe.is_error():
                raise ConstraintError(
                    f"The JSON schema of {what} cannot be satisfied: no JSON value matches it (for example a $ref"
                    " that only refers to itself). Fix the schema.",
                    param=param,
                )

    def _special_tokens(self, backend: str) -> dict[str, int]:
        """Added tokens llguidance treats as special: grammar literals must name them as tokens, not text."""
        added = json.loads(backend).get("added_tokens") or []
        out: dict[str, int] = {}
        for tok in added:
            tid, text = tok.get("id"), tok.get("content")
            ok = isinstance(tid, int) and text and tid < self.ll_tokenizer.vocab_size
            if ok and self.ll_tokenizer.is_special_token(tid):
                out[text] = tid
        return out


def _schemas(spec: Normalized) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The JSON schemas a constraint holds: (request field, what to call it, schema)."""
    inner = spec.inner if isinstance(spec, FramedSpec) else spec
    if isinstance(inner, JsonSchemaSpec):
        return [("response_format", "response_format", inner.schema)]
    if isinstance(inner, ToolCallSpec):
        return [("tools", f"tool '{f.name}'", f.parameters) for f in inner.functions if f.parameters is not None]
    return []


def _compile_error(message: str, spec: object) -> ConstraintError:
    if isinstance(spec, FramedSpec):
        spec = spec.inner
    what = "JSON schema" if isinstance(spec, JsonSchemaSpec | JsonObjectSpec) else "grammar"
    param = "tools" if isinstance(spec, ToolCallSpec) else "response_format"
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    if m := _UNIMPLEMENTED.search(message):
        keys = [k.strip().strip('"') for k in m.group(1).split(",") if k.strip()]
        return ConstraintError(
            f"The {what} uses JSON Schema features that constrained decoding does not support: "
            f"{', '.join(keys)}. Remove them or relax the schema.",
            unsupported=keys,
            param=param,
        )
    if m := _UNKNOWN_FORMAT.search(message):
        fmt = m.group(1).strip("\"'")
        return ConstraintError(
            f"The {what} uses a string format that constrained decoding does not support: format={fmt!r}.",
            unsupported=[f"format:{fmt}"],
            param=param,
        )
    return ConstraintError(f"The {what} cannot be enforced: {first}", param=param)


def _backend_json(tokenizer: Any) -> str:
    """The HF `tokenizers` JSON of an mlx-lm TokenizerWrapper, a transformers fast tokenizer or a Tokenizer."""
    tok = getattr(tokenizer, "_tokenizer", tokenizer)  # mlx-lm's TokenizerWrapper
    backend = getattr(tok, "backend_tokenizer", tok)  # transformers fast tokenizers
    if not hasattr(backend, "to_str"):
        raise ConstraintError(
            f"Constrained decoding needs a fast (tokenizers) tokenizer; got {type(tok).__name__}.", param=None
        )
    backend = copy.copy(backend)  # padding/truncation settings would leak into llguidance's tokenization
    backend.no_padding()
    backend.no_truncation()
    return str(backend.to_str())
