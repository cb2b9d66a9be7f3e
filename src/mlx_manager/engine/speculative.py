"""Speculative decoding inside the batch: drafters propose tokens, the target model checks them in one pass.

Per sequence, a step that speculates feeds the sequence's pending token and up to k drafted tokens through the
target model at once (one forward pass for the whole batch, rows right-padded to the widest). The drafts that
match what the target itself picks at each position are accepted, plus the target's own token after them; the KV
written for the rest is dropped: trimmed where every row rejected it, and otherwise each row's rejected tail rolled
into its left padding (as mlx-lm finalizes right-padded prompts), so rows of one batch can accept different counts.

Drafters: prompt lookup (the last few tokens matched earlier in the prompt or output, the tokens that followed
them proposed: free, and strong where a reply copies its context) and a draft model (a smaller model with the
same tokenizer, greedy, one cache per sequence). Both propose fixed tokens, so verification is the standard
rejection rule with a point-mass draft: a draft token is accepted with the target's probability of it, and on
rejection the target samples from its distribution without that token. The draw is coupled through the sequence's
Gumbel noise (sampling.SeededSampler): a position's token is what the non-speculative path would sample there with
the same key, so greedy and seeded output are the same with and without speculation. `rejection_sample` is the
general rule for drafts sampled from a distribution q (tested on its own).

Sequences with logits processors (grammars, penalties, logit_bias) and quantized or rotating KV caches do not
speculate; the scheduler turns speculation off above `max_batch` decoding sequences and lowers k as the batch grows,
and a sequence whose drafts keep failing waits longer and longer before it drafts again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.generate import BatchGenerator, GenerationBatch
from mlx_lm.models.cache import BatchKVCache, make_prompt_cache

from mlx_manager.engine.sampling import SeededSampler, greedy

log = logging.getLogger(__name__)

Mode = Literal["off", "lookup", "draft"]


@dataclass(frozen=True)
class SpeculativeConfig:
    # "lookup": prompt lookup; "draft": prompt lookup, then the draft model where lookup finds nothing.
    mode: Mode = "lookup"
    max_draft: int = 8  # k: draft tokens a sequence proposes per step, alone in the batch
    max_batch: int = 4  # no speculation with more sequences decoding
    ngram_min: int = 2
    ngram_max: int = 4
    draft_model: Path | None = None
    # Speculate only while it pays (measured step times, acceptance); False: whenever a draft is found (tests).
    adaptive: bool = True


LOOKUP = SpeculativeConfig()  # the default: prompt lookup


@dataclass
class SpeculativeStats:
    drafted: int = 0  # draft tokens checked by the target
    accepted: int = 0  # of those, accepted
    steps: int = 0  # steps that speculated

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class PromptLookup:
    """The tokens of one sequence with an index of their n-grams: each n-gram's latest place with a continuation."""

    def __init__(self, ngram_min: int, ngram_max: int) -> None:
        self.ngram_min, self.ngram_max = ngram_min, ngram_max
        self.tokens: list[int] = []
        self.index: dict[tuple[int, ...], int] = {}

    def extend(self, tokens: Seq[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens) - 1  # the n-grams ending before `token` now have a continuation
            for n in range(self.ngram_min, self.ngram_max + 1):
                if end >= n:
                    self.index[tuple(self.tokens[end - n : end])] = end

    def draft(self, k: int) -> list[int]:
        """Up to `k` tokens that followed the longest earlier match of the last n tokens."""
        for n in range(self.ngram_max, self.ngram_min - 1, -1):
            if len(self.tokens) <= n:
                continue
            at = self.index.get(tuple(self.tokens[-n:]))
            if at is not None:
                return self.tokens[at : at + k]
        return []


class DraftModel:
    """A smaller model with the target's tokenizer, drafting greedily; one KV cache per sequence, trimmed back to
    what it shares with the sequence's accepted tokens before each draft."""

    def __init__(self, model: nn.Module, name: str) -> None:
        self.model = model
        self.name = name
        self.rows: dict[int, tuple[list[Any], list[int]]] = {}  # uid -> (cache, the tokens it holds)

    def draft(self, uid: int, context: list[int], k: int) -> list[int]:
        cache, held = self.rows.get(uid) or (make_prompt_cache(self.model), [])
        common = 0
        limit = min(len(held), len(context) - 1)  # at least the last token is fed, for its logits
        while common < limit and held[common] == context[common]:
            common += 1
        if len(held) > common:
            for c in cache:
                c.trim(len(held) - common)
        feed = context[common:]
        for start in range(0, len(feed) - 1, 512):  # long catch-up (the prompt, the first time) in chunks
            part = feed[start : min(start + 512, len(feed) - 1)]
            self.model(mx.array(part)[None], cache=cache)
            mx.eval([c.state for c in cache])
        y = mx.array(feed[-1:])
        drafts: list[mx.array] = []
        for i in range(k):
            y = mx.argmax(self.model(y[None], cache=cache)[0, -1:], axis=-1)
            drafts.append(y)
            if i < k - 1:
                mx.async_eval(y)
        tokens = cast(list[int], mx.concatenate(drafts).tolist()) if drafts else []
        self.rows[uid] = (cache, context + tokens[:-1])  # the last draft was not fed
        return tokens

    def forget(self, live: set[int]) -> None:
        for uid in [u for u in self.rows if u not in live]:
            del self.rows[uid]


def load_draft_model(path: Path, target_tokenizer: Any) -> DraftModel | None:
    """The draft model at `path`, or None (logged) when it cannot serve: another vocabulary, a cache that cannot
    be trimmed, or a load failure."""
    from mlx_lm import load
    from mlx_lm.models.cache import can_trim_prompt_cache

    try:
        loaded = load(str(path))
    except Exception:
        log.exception("Could not load the draft model %s; speculating with prompt lookup only", path)
        return None
    model, tokenizer = loaded[0], loaded[1]
    if tokenizer.get_vocab() != target_tokenizer.get_vocab():
        log.warning("Draft model %s has another tokenizer than the target; not used", path)
        return None
    if not can_trim_prompt_cache(make_prompt_cache(model)):
        log.warning("Draft model %s keeps a cache that cannot be rolled back; not used", path)
        return None
    return DraftModel(model, path.name)


def rejection_sample(p: mx.array, drafts: list[int], q: mx.array | None, key: mx.array) -> tuple[int, int]:
    """The standard speculative-sampling rule. `p`: target probabilities at each draft position and one past it
    (k+1, V); `q`: the draft distributions (k, V), None for fixed drafts (point masses). Returns (accepted, next):
    drafts[:accepted] are kept, then `next` is drawn from the residual max(p - q, 0) (or from p after all k)."""
    keys = mx.random.split(key, 2 * len(drafts) + 1)
    for j, d in enumerate(drafts):
        qd = 1.0 if q is None else _scalar(q[j, d])
        pd = _scalar(p[j, d])
        u = _scalar(mx.random.uniform(key=keys[2 * j]))
        if qd > 0 and u < min(1.0, pd / qd):
            continue
        point = mx.zeros_like(p[j]).at[d].add(1.0) if q is None else q[j]
        residual = mx.maximum(p[j] - point, 0.0)
        return j, int(_scalar(mx.random.categorical(mx.log(residual), key=keys[2 * j + 1])))
    return len(drafts), int(_scalar(mx.random.categorical(mx.log(p[len(drafts)]), key=keys[-1])))


def coupled_picks(sampler: SeededSampler, logprobs: mx.array) -> mx.array:
    """What `sampler` draws at each of several consecutive positions (W, V), with the keys it would use for them
    one step at a time (Gumbel-max): the verifier's target tokens. A draft equal to its position's pick is
    accepted, so a fixed draft d is accepted with probability p(d), and a rejected position yields the pick, a draw
    from p without d: the standard rule for a point-mass draft."""
    subs, _ = sampler.keys(logprobs.shape[0])
    scaled = sampler.scaled(logprobs)
    noise = mx.stack([mx.random.gumbel(scaled.shape[-1:], key=k) for k in subs])
    return mx.argmax(scaled + noise, axis=-1).astype(mx.uint32)


def _scalar(x: mx.array) -> float:
    return float(cast(float, x.item()))


def accepted_count(drafts: list[int], targets: list[int]) -> int:
    """Drafts accepted: the longest prefix equal to the target's own picks at the same positions."""
    n = 0
    while n < len(drafts) and drafts[n] == targets[n]:
        n += 1
    return n


@dataclass
class _Row:
    lookup: PromptLookup
    k: int = 4  # draft length: doubled after a fully accepted draft, cut back to what was accepted
    accepted_ema: float = 1.0  # accepted drafts per speculative step
    misses: int = 0  # speculative steps in a row with nothing accepted
    cooldown: int = 0  # steps left before this sequence drafts again


def rollback(caches: list[Any], rejected: list[int]) -> None:
    """Drop each row's `rejected` last positions: a trim for what all rows reject, a roll into the left padding
    for the rest (BatchKVCache's own right-padding finalize)."""
    low = min(rejected)
    extra = [r - low for r in rejected]
    for c in caches:
        if low:
            c.trim(low)
        if any(extra):
            c.prepare(right_padding=extra)
            c.finalize()
    if any(extra):
        pad = cast(list[int], caches[0].left_padding.tolist())
        if min(pad) >= 32:  # every row padded: drop the shared padding (filter shifts left)
            for c in caches:
                c.filter(list(range(len(pad))))


@dataclass
class Speculation:
    """Per-model state: config, drafters, per-sequence rows and counters; decides who drafts how much."""

    config: SpeculativeConfig
    draft_model: DraftModel | None = None
    stats: SpeculativeStats = field(default_factory=SpeculativeStats)
    rows: dict[int, _Row] = field(default_factory=dict)
    # By batch size: seconds of a plain step, and what each drafted position adds to it (speculate while it pays).
    plain_seconds: dict[int, float] = field(default_factory=dict)
    extra_seconds: dict[int, float] = field(default_factory=dict)
    plain_run: int = 0  # steps with drafts that did not speculate, since the last that did
    _warm: set[tuple[int, bool]] = field(default_factory=set)

    @property
    def enabled(self) -> bool:
        return self.config.mode != "off" and self.config.max_draft > 0

    def k_for(self, batch: int) -> int:
        """Draft tokens per sequence at this batch size: k alone, fewer as the batch grows."""
        if not self.enabled or batch > self.config.max_batch:
            return 0
        return max(1, self.config.max_draft // batch)

    def plan(self, gb: GenerationBatch, pending: list[int]) -> list[list[int]] | None:
        """Drafts for each row of `gb` (whose next inputs are `pending`), or None: a plain step."""
        batch = len(gb.uids)
        k = self.k_for(batch)
        live = set(gb.uids)
        for uid in [u for u in self.rows if u not in live]:
            del self.rows[uid]
        if self.draft_model is not None:
            self.draft_model.forget(live)
        if not k or not all(isinstance(c, BatchKVCache) for c in gb.prompt_cache):
            return None
        drafts: list[list[int]] = []
        expected = 0.0
        for i, uid in enumerate(gb.uids):
            row = self.rows.get(uid)
            if row is None:
                row = self.rows[uid] = _Row(PromptLookup(self.config.ngram_min, self.config.ngram_max))
            tokens = gb.tokens[i]
            have = len(row.lookup.tokens)
            row.lookup.extend([*tokens[have:], pending[i]] if have <= len(tokens) else [])
            room = gb.max_tokens[i] - gb._num_tokens[i] - 1  # the pending token is emitted this step
            if (row.cooldown > 0 and self.config.adaptive) or room <= 0 or not _speculable(gb, i):
                drafts.append([])
                continue
            want = min(k, room, row.k if self.config.adaptive else k)
            d = row.lookup.draft(want)
            if not d and self.draft_model is not None and self.config.mode == "draft":
                d = self.draft_model.draft(uid, row.lookup.tokens, want)
            drafts.append(d)
            expected += min(row.accepted_ema, len(d))
        if not any(drafts):
            return None
        self.plain_run += 1
        width = 1 + max(len(d) for d in drafts)
        if not self._pays(batch, width, expected) and self.plain_run < 16:  # now and then, measure again
            return None
        self.plain_run = 0
        return drafts

    def candidates(self, gb: GenerationBatch) -> bool:
        """Whether a row may draft this step; if none may, the step need not wait for the pending tokens (plain
        steps overlap the next forward pass with the last). Counts down the waits of rows whose drafts failed."""
        if not all(isinstance(c, BatchKVCache) for c in gb.prompt_cache):
            return False  # quantized, rotating or recurrent caches: no per-row rollback here
        found = False
        for i, uid in enumerate(gb.uids):
            row = self.rows.get(uid)
            if row is not None and row.cooldown > 0 and self.config.adaptive:
                row.cooldown -= 1
                continue
            # A row's first token waits for no drafts: a plain step hands it out before the next forward pass ends.
            first = gb._num_tokens[i] == 0
            found = found or (not first and _speculable(gb, i) and gb.max_tokens[i] - gb._num_tokens[i] > 1)
        return found

    def _pays(self, batch: int, width: int, expected: float) -> bool:
        """Tokens a second with these drafts (`expected` accepted in all) beat a plain step's, by 5%."""
        if not self.config.adaptive:
            return True
        plain, extra = self.plain_seconds.get(batch), self.extra_seconds.get(batch)
        if plain is None or extra is None:
            return True  # not measured yet: try it
        return (batch + expected) / (plain + extra * (width - 1)) > 1.05 * batch / plain

    def timed(self, batch: int, width: int, seconds: float) -> None:
        """A step's wall time; `width` 1 for a plain step."""
        if (batch, width > 1) not in self._warm:  # the first step of a kind compiles and warms up
            self._warm.add((batch, width > 1))
            return
        if width == 1:
            _ema(self.plain_seconds, batch, seconds)
        elif batch in self.plain_seconds:
            _ema(self.extra_seconds, batch, max(seconds - self.plain_seconds[batch], 0.0) / (width - 1))

    def result(self, uid: int, drafted: int, accepted: int) -> None:
        self.stats.drafted += drafted
        self.stats.accepted += accepted
        row = self.rows.get(uid)
        if row is None or not drafted:
            return
        row.accepted_ema = 0.7 * row.accepted_ema + 0.3 * accepted
        row.k = min(2 * row.k, self.config.max_draft) if accepted == drafted else max(accepted + 1, 2)
        if accepted:
            row.misses = 0
        else:
            row.misses += 1
            row.cooldown = min(2**row.misses, 64) - 1


def _ema(table: dict[int, float], key: int, value: float) -> None:
    old = table.get(key)
    table[key] = value if old is None else 0.8 * old + 0.2 * value


def _speculable(gb: GenerationBatch, i: int) -> bool:
    """Rows with logits processors (grammars, penalties, logit_bias) keep state per call: they do not speculate."""
    sampler = gb.samplers[i] if gb.samplers else None
    plain = sampler is None or sampler is greedy or isinstance(sampler, SeededSampler)
    return plain and not (gb.logits_processors and gb.logits_processors[i])


class SpeculativeGenerationBatch(GenerationBatch):
    """mlx-lm's generation batch with a speculative step; a plain step where no row drafts."""

    spec: Speculation

    def next(self) -> list[GenerationBatch.Response]:
        if not self.uids:
            return []
        batch = len(self.uids)
        started = time.perf_counter()
        if self.spec.k_for(batch) and self.spec.candidates(self):
            pending = cast(list[int], self._next_tokens.tolist())
            drafts = self.spec.plan(self, pending)
            if drafts is not None:
                responses = self._speculate(pending, drafts)
                self.spec.timed(batch, 1 + max(map(len, drafts)), time.perf_counter() - started)
                return responses
        responses = super().next()
        if self.spec.k_for(batch):
            self.spec.timed(batch, 1, time.perf_counter() - started)
        return responses

    def _speculate(self, pending: list[int], drafts: list[list[int]]) -> list[GenerationBatch.Response]:
        width = 1 + max(len(d) for d in drafts)
        rows = [[t, *d, *([t] * (width - 1 - len(d)))] for t, d in zip(pending, drafts, strict=True)]
        logits = self.model(mx.array(rows, dtype=mx.uint32), cache=self.prompt_cache)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        targets, first_lp = self._targets(logprobs, pending, drafts)
        picks = cast(list[list[int]], targets.tolist())
        self.spec.stats.steps += 1

        out: list[tuple[int, int, mx.array, str | None]] = []  # row, token, logprobs, finish reason
        keep: list[int] = []
        kept_positions: list[int] = []
        next_tokens: list[int] = []
        next_logprobs: list[mx.array] = []
        for i, uid in enumerate(self.uids):
            n = accepted_count(drafts[i], picks[i])
            self.spec.result(uid, len(drafts[i]), n)
            sampler = self.samplers[i] if self.samplers else None
            if isinstance(sampler, SeededSampler) and not self._processors(i):
                sampler.key = sampler.keys(n + 1)[1][n]  # the draws of positions 0..n are used
            emitted = [pending[i], *drafts[i][:n]]
            lps = [self._next_logprobs[i], *(logprobs[i, j] for j in range(n))]
            finish = None
            count = 0
            for token in emitted:
                count += 1
                self._num_tokens[i] += 1
                if self._num_tokens[i] >= self.max_tokens[i]:
                    finish = "length"
                if self._matchers[i].advance(token):
                    finish = "stop"
                if finish is not None:
                    break
            self.tokens[i].extend(emitted[:count])
            kept_positions.append(count)
            for j in range(count):
                out.append((i, emitted[j], lps[j], finish if j == count - 1 else None))
            if finish is None:
                keep.append(i)
            next_tokens.append(picks[i][n])
            first = first_lp[i]
            next_logprobs.append(first if first is not None else logprobs[i, n])
        rollback(self.prompt_cache, [width - c for c in kept_positions])
        responses = [  # finished rows hand back their cache and tokens, as the plain step does
            self.Response(
                self.uids[i], token, lp, finish, *((self.extract_cache(i), self.tokens[i]) if finish else (None, None))
            )
            for i, token, lp, finish in out
        ]
        self._current_tokens = mx.array(pending, dtype=mx.uint32)  # type: ignore[assignment]  # untyped in mlx-lm
        self._next_tokens = mx.array(next_tokens, dtype=mx.uint32)
        self._next_logprobs = next_logprobs
        if len(keep) < len(self.uids):
            self.filter(keep)
        return responses

    def _processors(self, i: int) -> list[Any]:
        return list(self.logits_processors[i] or ()) if self.logits_processors else []

    def _targets(
        self, logprobs: mx.array, pending: list[int], drafts: list[list[int]]
    ) -> tuple[mx.array, list[mx.array | None]]:
        """The token the target picks at every position of every row (B, W), computed on the device: greedy
        argmax, or a seeded sampler's Gumbel-max draw with the keys it would use one step at a time. Rows with
        logits processors (which do not draft) pick at their first position as the plain step does."""
        width = logprobs.shape[1]
        picks: list[mx.array] = []
        first: list[mx.array | None] = []
        for i in range(len(self.uids)):
            sampler = self.samplers[i] if self.samplers else None
            processors = self._processors(i)
            row = logprobs[i]
            if processors:
                context = self._token_context[i].update_and_fetch(mx.array([pending[i]]))
                lp = logprobs[i, :1]
                for processor in processors:
                    lp = processor(context, lp)
                lp = lp - mx.logsumexp(lp, axis=-1, keepdims=True)
                token = (sampler or self.fallback_sampler)(lp)
                picks.append(mx.broadcast_to(token.astype(mx.uint32), (width,)))
                first.append(lp[0])
                continue
            first.append(None)
            if isinstance(sampler, SeededSampler):
                picks.append(coupled_picks(sampler, row))
            else:
                picks.append(mx.argmax(row, axis=-1).astype(mx.uint32))
        targets = mx.stack(picks)
        mx.eval(targets)
        return targets, first


class SpeculativeBatchGenerator(BatchGenerator):
    """BatchGenerator whose generation batch can speculate (see the module doc)."""

    def __init__(self, model: nn.Module, spec: Speculation, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._generation_batch = SpeculativeGenerationBatch.empty(self.model, self.sampler)
        self._generation_batch.spec = spec
