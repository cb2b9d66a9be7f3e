"""Decode cost of grammar-constrained generation (json_schema) against free generation, in BatchGenerator.

For each model and batch size it decodes the same prompts free and constrained, greedy, with no stop tokens
(every sequence runs exactly --tokens tokens; the schema is too long to complete sooner), alternating the two
(ABBA) --repeats times. It prints the median ms per decode step (one token per sequence) over all steps, the
aggregate tok/s, the overhead, and the processor's own time per token (matcher advance + mask + upload): as
measured during decoding (wall time, sharing the CPU with the forward pass it overlaps) and replayed alone.
It writes everything as JSON. On a 2-core CPU, OPENBLAS_NUM_THREADS=1 gives much steadier numbers.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 .venv/bin/python benchmarks/constrained_overhead.py \\
        .cache/bench-models/shaped-llama-0.5b --smollm2 --tokens 32
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import llguidance
import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import BatchGenerator, StopSequences

from mlx_manager.engine.constraints import ConstraintFactory, GrammarProcessor

REPO = Path(__file__).resolve().parents[1]
GGUF = REPO / ".cache" / "test-assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "email", "tags", "role"],
    "additionalProperties": False,
}
SCHEMA = {  # at least 20 people: far longer than any --tokens this is run with
    "type": "object",
    "properties": {"team": {"type": "string"}, "people": {"type": "array", "items": PERSON, "minItems": 20}},
    "required": ["team", "people"],
    "additionalProperties": False,
}
PROMPT = "List the people on the platform team as JSON with name, age, email, tags and role."


def prompts_for(tokenizer: Any, batch: int) -> list[list[int]]:
    out = []
    for i in range(batch):
        text = f"{PROMPT} Team #{i}."
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
        else:
            ids = tokenizer.encode(text)
        out.append(list(ids))
    return out


def decode_run(model: Any, prompts: list[list[int]], tokens: int, factory: ConstraintFactory | None) -> dict[str, Any]:
    procs: list[GrammarProcessor] = [factory.processor(SCHEMA) for _ in prompts] if factory else []
    gen = BatchGenerator(model, completion_batch_size=len(prompts), prefill_batch_size=len(prompts))
    uids = gen.insert(
        prompts,
        max_tokens=[tokens] * len(prompts),
        logits_processors=[[p] for p in procs] if procs else None,
        stop_sequences=[StopSequences()] * len(prompts),  # no stop tokens: fixed length
    )
    out: dict[int, list[int]] = {uid: [] for uid in uids}
    steps: list[float] = []
    produced = 0
    while produced < tokens * len(prompts):
        start = time.perf_counter()
        _, responses = gen.next()
        elapsed = time.perf_counter() - start
        if len(responses) == len(prompts):
            steps.append(elapsed)
        for r in responses:
            out[r.uid].append(r.token)
        produced += len(responses)
    gen.close()
    return {
        "step_s": steps[1:],  # the first step also finishes prefill
        "mask_s": sum(p.mask_seconds for p in procs),
        "mask_calls": sum(p.calls for p in procs),
        "errors": [p.error for p in procs if p.error],
        "outputs": [out[uid] for uid in uids],
    }


def isolated_mask_us(factory: ConstraintFactory, outputs: list[list[int]], vocab: int) -> float:
    """Processor time per token replaying generated tokens with nothing else running (no forward pass)."""
    logits = mx.zeros((1, vocab))
    total, calls = 0.0, 0
    for ids in outputs:
        proc = factory.processor(SCHEMA)
        for n in range(len(ids)):
            mx.eval(proc(mx.array([0, *ids[:n]]), logits))
        total, calls = total + proc.mask_seconds, calls + proc.calls
    return total / max(calls, 1) * 1e6


def bench_model(path: Path, batches: list[int], tokens: int, repeats: int) -> list[dict[str, Any]]:
    model, tokenizer = load(str(path))[:2]
    config = json.loads((path / "config.json").read_text())
    vocab = int(config["vocab_size"])
    start = time.perf_counter()
    factory = ConstraintFactory(tokenizer, vocab, tokenizer.eos_token_ids)
    factory_s = time.perf_counter() - start
    start = time.perf_counter()
    factory.compile(SCHEMA)
    compile_s = time.perf_counter() - start
    decode_run(model, prompts_for(tokenizer, 1), 4, factory)  # warm-up
    rows = []
    for batch in batches:
        prompts = prompts_for(tokenizer, batch)
        steps: dict[bool, list[float]] = {False: [], True: []}
        mask_s, mask_calls = 0.0, 0
        errors: list[str] = []
        outputs: list[list[int]] = []
        for i in range(repeats):
            for constrained in (False, True) if i % 2 == 0 else (True, False):  # ABBA against drift
                run = decode_run(model, prompts, tokens, factory if constrained else None)
                steps[constrained] += run["step_s"]
                if constrained:
                    mask_s, mask_calls = mask_s + run["mask_s"], mask_calls + run["mask_calls"]
                    errors, outputs = errors + run["errors"], run["outputs"]
                mx.clear_cache()
        free_ms, cons_ms = statistics.median(steps[False]) * 1e3, statistics.median(steps[True]) * 1e3
        rows.append(
            {
                "model": path.name,
                "vocab": vocab,
                "tokenizer_vocab": factory.ll_tokenizer.vocab_size,
                "batch": batch,
                "tokens": tokens,
                "repeats": repeats,
                "free_ms_per_step": free_ms,
                "constrained_ms_per_step": cons_ms,
                "free_tok_s": batch * 1e3 / free_ms,
                "constrained_tok_s": batch * 1e3 / cons_ms,
                "overhead_pct": (cons_ms / free_ms - 1) * 100,
                "mask_us_per_token": mask_s / max(mask_calls, 1) * 1e6,
                "mask_us_per_token_isolated": isolated_mask_us(factory, outputs, vocab),
                "factory_s": factory_s,
                "compile_ms": compile_s * 1e3,
                "matcher_errors": errors,
                "sample_output": tokenizer.decode(outputs[0]) if outputs else "",
            }
        )
    return rows


def smollm2_f32(models_dir: Path) -> Path:
    from mlx_manager.manager.gguf_import import import_gguf

    target = models_dir / "SmolLM2-135M-Instruct-f32"
    if not (target / "config.json").exists():
        import_gguf(GGUF, models_dir, target.name, dtype="float32")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--smollm2", action="store_true", help="also the SmolLM2-135M GGUF imported as float32")
    parser.add_argument("--import-dir", type=Path, default=REPO / ".cache" / "bench-models")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "constrained_overhead.json")
    args = parser.parse_args()
    models = list(args.models) + ([smollm2_f32(args.import_dir)] if args.smollm2 else [])
    rows = [row for path in models for row in bench_model(path, args.batch, args.tokens, args.repeats)]
    header = f"{'model':<28}{'batch':>6}{'free ms/step':>14}{'json ms/step':>14}{'free tok/s':>12}"
    print(header + f"{'json tok/s':>12}{'overhead':>10}{'mask us/tok':>13}{'(isolated)':>12}")
    for r in rows:
        print(
            f"{r['model'][:27]:<28}{r['batch']:>6}{r['free_ms_per_step']:>14.1f}{r['constrained_ms_per_step']:>14.1f}"
            f"{r['free_tok_s']:>12.1f}{r['constrained_tok_s']:>12.1f}{r['overhead_pct']:>9.1f}%"
            f"{r['mask_us_per_token']:>13.0f}{r['mask_us_per_token_isolated']:>12.0f}"
        )
    for r in rows:
        if r["matcher_errors"]:
            print(f"!! {r['model']} batch {r['batch']}: matcher errors {r['matcher_errors'][:2]}")
    meta = {"mlx": str(getattr(mx, "__version__", "?")), "llguidance": llguidance.__version__}
    meta["machine"] = platform.machine()
    meta["device"] = str(mx.default_device())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "schema": SCHEMA, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
