"""Per-token cost of JSON-schema grammar engines in isolation: llguidance against xgrammar, no model forward.

For each tokenizer, JSON schema and whitespace mode it compiles the schema cold (--compiles times), then replays a
fixed valid document token by token (--repeats times, each with a fresh matcher from the compiled grammar, the
engines alternated): per token it computes the packed next-token bitmask and then advances the matcher with the
document's token. llguidance fills a numpy int32 buffer through `unsafe_compute_mask_ptr` and `consume_token`, as
`mlx_manager.engine.constraints.GrammarProcessor` does; xgrammar fills `allocate_token_bitmask`'s tensor (a numpy
array when torch is absent or with --xgr-numpy) with `fill_next_token_bitmask` and `accept_token`. It prints compile
ms and mask+advance µs per token (median, mean, p99) and writes everything as JSON.

xgrammar's wheel depends on torch, which mlx-manager never depends on, so this runs in a throwaway venv and
imports neither mlx nor mlx_manager. The realistic vocabulary is SmolLM2-135M's (49152 tokens), rebuilt from the
test GGUF with the project's importer; the small one is a 1k-token test tokenizer:

    python3 -m venv .cache/bench-venvs/grammar
    .cache/bench-venvs/grammar/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu  # not CUDA's
    .cache/bench-venvs/grammar/bin/pip install xgrammar llguidance==1.9.1 tokenizers numpy
    .venv/bin/python -c "import mlx.core as mx, pathlib; \\
    from mlx_manager.manager.gguf_import import _build_tokenizer; \\
    m = mx.load('.cache/test-assets/SmolLM2-135M-Instruct.Q4_1.gguf', return_metadata=True)[1]; \\
    tok, _ = _build_tokenizer({k: v.tolist() if isinstance(v, mx.array) else v for k, v in m.items()}); \\
    out = pathlib.Path('.cache/bench-venvs/grammar/tokenizers/SmolLM2-135M'); out.mkdir(parents=True, exist_ok=True); \\
    tok.save(str(out / 'tokenizer.json'))"
    OMP_NUM_THREADS=1 .cache/bench-venvs/grammar/bin/python benchmarks/grammar_engines.py

Without torch installed (xgrammar installed with --no-deps) the script stubs the `torch` and `transformers` modules
xgrammar imports at module level, builds its TokenizerInfo from the vocabulary directly and hands it numpy bitmasks:

    python3 -m venv .cache/bench-venvs/grammar-notorch
    .cache/bench-venvs/grammar-notorch/bin/pip install --no-deps xgrammar
    .cache/bench-venvs/grammar-notorch/bin/pip install apache-tvm-ffi pydantic numpy tokenizers llguidance==1.9.1
    OMP_NUM_THREADS=1 .cache/bench-venvs/grammar-notorch/bin/python benchmarks/grammar_engines.py --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import platform
import sys
import time
import types
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import llguidance
import numpy as np
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
TOKENIZERS = [
    REPO / ".cache" / "test-assets" / "tiny-models" / "tiny-qwen2.5" / "tokenizer.json",
    REPO / ".cache" / "bench-venvs" / "grammar" / "tokenizers" / "SmolLM2-135M" / "tokenizer.json",
]
EOS_NAMES = ("<|im_end|>", "<|endoftext|>", "</s>", "<|end_of_text|>", "<|eot_id|>")
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def _import_xgrammar() -> tuple[types.ModuleType, str]:
    """xgrammar, and how: with torch, or torch-free with stub `torch`/`transformers` modules for its imports."""
    mode = "with torch"
    if not HAS_TORCH:
        import tvm_ffi  # noqa: F401  (first: it probes torch itself and copes with its absence)

        class _Placeholder:  # stands in for torch.Tensor & co. in xgrammar's annotations
            pass

        torch = types.ModuleType("torch")
        torch.Tensor = torch.LongTensor = torch.FloatTensor = _Placeholder  # type: ignore[attr-defined]
        torch.int32 = "int32"  # type: ignore[attr-defined]
        torch.tensor = lambda *a, **k: None  # type: ignore[attr-defined]
        sys.modules["torch"] = torch
        mode = "torch-free (stubbed torch)"
    if not HAS_TRANSFORMERS:
        transformers = types.ModuleType("transformers")
        for name in ("LogitsProcessor", "PreTrainedTokenizerBase", "PreTrainedTokenizerFast"):
            setattr(transformers, name, type(name, (), {}))
        sys.modules["transformers"] = transformers
        mode += ", stubbed transformers"
    import xgrammar

    return xgrammar, mode


xgr, XGR_IMPORT = _import_xgrammar()

PERSON: dict[str, Any] = {  # as in benchmarks/constrained_overhead.py
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
PERSON_DOC = {
    "name": "Ada King, Countess of Lovelace",
    "age": 36,
    "email": "ada.lovelace@analytical-engine.example.org",
    "tags": [
        "mathematics",
        "poetical science",
        "notes on the analytical engine",
        "Bernoulli numbers",
        "London",
        "first published algorithm",
        "Charles Babbage",
        "Jacquard loom",
    ],
    "role": "admin",
}


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


FLAT = _obj(
    {
        "id": {"type": "integer"},
        "sku": {"type": "string"},
        "title": {"type": "string"},
        "brand": {"type": "string"},
        "category": {"type": "string"},
        "price": {"type": "number"},
        "in_stock": {"type": "boolean"},
        "quantity": {"type": "integer"},
        "rating": {"type": "number"},
        "description": {"type": "string"},
    }
)
FLAT_DOC = {
    "id": 48213,
    "sku": "WB-750-STL-BLK",
    "title": "Stainless steel water bottle, 750 ml, matte black",
    "brand": "Northwind Outdoor",
    "category": "Kitchen & Dining / Drinkware",
    "price": 24.99,
    "in_stock": True,
    "quantity": 132,
    "rating": 4.6,
    "description": "Double-walled vacuum insulation keeps drinks cold for 24 hours or hot for 12. "
    "Leak-proof lid, fits most cup holders, dishwasher safe.",
}
NESTED = _obj(
    {
        "order_id": {"type": "string"},
        "status": {"enum": ["pending", "paid", "shipped", "delivered", "cancelled"]},
        "customer": _obj(
            {
                "name": {"type": "string"},
                "email": {"type": "string"},
                "address": _obj({k: {"type": "string"} for k in ("street", "city", "postal_code", "country")}),
            }
        ),
        "items": {
            "type": "array",
            "minItems": 1,
            "items": _obj(
                {
                    "sku": {"type": "string"},
                    "name": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "unit_price": {"type": "number"},
                    "options": {
                        "type": "array",
                        "items": _obj({"key": {"type": "string"}, "value": {"type": "string"}}),
                    },
                }
            ),
        },
        "total": {"type": "number"},
    }
)
NESTED_DOC = {
    "order_id": "ORD-2024-000917",
    "status": "shipped",
    "customer": {
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "address": {"street": "12 Harbor Lane", "city": "Arlington", "postal_code": "22201", "country": "US"},
    },
    "items": [
        {
            "sku": "KB-87-RED",
            "name": "Mechanical keyboard",
            "quantity": 1,
            "unit_price": 89.5,
            "options": [{"key": "switch", "value": "red"}, {"key": "layout", "value": "US ANSI"}],
        },
        {"sku": "MS-02", "name": "Wireless mouse", "quantity": 2, "unit_price": 19.99, "options": []},
        {
            "sku": "CBL-USB-C-2M",
            "name": "USB-C cable, 2 m",
            "quantity": 3,
            "unit_price": 7.25,
            "options": [{"key": "colour", "value": "white"}],
        },
    ],
    "total": 151.23,
}
SCHEMAS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "flat": (FLAT, FLAT_DOC),
    "person": (PERSON, PERSON_DOC),
    "nested": (NESTED, NESTED_DOC),
}
# Whitespace modes: llguidance JSON options and xgrammar compile_json_schema keywords. The documents are
# json.dumps() output (", " and ": " separators, one line), valid in every mode.
WHITESPACE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # Exactly one form allowed by both: ", " and ": ", no other whitespace.
    "compact": (
        {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "},
        {"any_whitespace": False, "separators": (", ", ": ")},
    ),
    # Any JSON whitespace between tokens, unbounded, in both.
    "flexible": ({"whitespace_flexible": True}, {"any_whitespace": True}),
    # mlx-manager's own setting (JsonOptions) for llguidance; xgrammar's nearest: any whitespace, at most 21 chars.
    "project": ({"whitespace_pattern": r"(?: |\n[ \t]{0,20})?"}, {"any_whitespace": True, "max_whitespace_cnt": 21}),
}


@dataclass
class Vocab:
    name: str
    path: Path
    tokenizer: Tokenizer
    size: int
    eos: int


def load_vocab(path: Path) -> Vocab:
    tok = Tokenizer.from_file(str(path))
    eos = next((i for n in EOS_NAMES if (i := tok.token_to_id(n)) is not None), None)
    if eos is None:
        raise SystemExit(f"{path}: none of {EOS_NAMES} in the vocabulary")
    decoder = (json.loads(path.read_text()).get("decoder") or {}).get("type")
    if decoder != "ByteLevel":
        raise SystemExit(f"{path}: only byte-level BPE tokenizers are handled (decoder {decoder!r})")
    return Vocab(path.parent.name, path, tok, tok.get_vocab_size(), eos)


# --- the two engines, same interface ------------------------------------------------------------------------


class Llg:
    name = "llguidance"

    def __init__(self, vocab: Vocab) -> None:
        self.tokenizer = llguidance.LLTokenizer(vocab.tokenizer.to_str(), eos_token=[vocab.eos])
        self.words = np.zeros((vocab.size + 31) // 32, dtype=np.int32)  # packed bitmask, reused
        self.nbytes = self.words.size * self.words.itemsize

    def compile(self, schema: dict[str, Any], ws: str) -> llguidance.LLMatcher:
        opts = {"lenient": False, **WHITESPACE[ws][0]}
        source = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=opts)  # type: ignore[arg-type]
        matcher = llguidance.LLMatcher(self.tokenizer, source, log_level=0)
        if matcher.is_error():
            raise RuntimeError(matcher.get_error())
        return matcher

    def matcher(self, compiled: llguidance.LLMatcher) -> llguidance.LLMatcher:
        return compiled.deep_copy()  # what ConstraintFactory.processor() does per sequence

    def mask(self, m: llguidance.LLMatcher) -> None:
        m.unsafe_compute_mask_ptr(self.words.ctypes.data, self.nbytes)

    def advance(self, m: llguidance.LLMatcher, token: int) -> bool:
        return bool(m.consume_token(token))

    def words_view(self) -> np.ndarray:
        return self.words


class Xgr:
    name = "xgrammar"

    def __init__(self, vocab: Vocab, numpy_bitmask: bool) -> None:
        if HAS_TRANSFORMERS:
            from transformers import PreTrainedTokenizerFast

            hf = PreTrainedTokenizerFast(tokenizer_file=str(vocab.path))
            info = xgr.TokenizerInfo.from_huggingface(hf, vocab_size=vocab.size, stop_token_ids=[vocab.eos])
            self.info_source = "TokenizerInfo.from_huggingface"
        else:
            encoded = [""] * vocab.size
            for text, tid in vocab.tokenizer.get_vocab().items():
                encoded[tid] = text
            info = xgr.TokenizerInfo(
                encoded, xgr.VocabType.BYTE_LEVEL, vocab_size=vocab.size, stop_token_ids=[vocab.eos]
            )
            self.info_source = "TokenizerInfo(encoded vocab, BYTE_LEVEL)"
        if info.vocab_type != xgr.VocabType.BYTE_LEVEL:
            raise RuntimeError(f"xgrammar sees {info.vocab_type}, expected BYTE_LEVEL")
        # One thread like llguidance; no cache, so every compile is cold.
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        if numpy_bitmask or not HAS_TORCH:
            self.bitmask: Any = np.full((1, (vocab.size + 31) // 32), -1, dtype=np.int32)
            self.bitmask_kind = "numpy int32 (DLPack)"
        else:
            self.bitmask = xgr.allocate_token_bitmask(1, vocab.size)
            self.bitmask_kind = "torch int32 (allocate_token_bitmask)"

    def compile(self, schema: dict[str, Any], ws: str) -> Any:
        return self.compiler.compile_json_schema(json.dumps(schema), **WHITESPACE[ws][1])

    def matcher(self, compiled: Any) -> Any:
        return xgr.GrammarMatcher(compiled)

    def mask(self, m: Any) -> None:
        m.fill_next_token_bitmask(self.bitmask, 0)

    def advance(self, m: Any, token: int) -> bool:
        return bool(m.accept_token(token))

    def words_view(self) -> np.ndarray:
        row = self.bitmask[0]
        return row if isinstance(row, np.ndarray) else np.asarray(row.numpy())


# --- measuring --------------------------------------------------------------------------------------------


def allowed(words: np.ndarray, vocab: int) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab].astype(bool)


def replay(engine: Llg | Xgr, compiled: Any, ids: list[int], vocab: int) -> dict[str, Any]:
    """Mask then advance for every token of the document; times in ns, checks outside the timed region."""
    start = time.perf_counter_ns()
    m = engine.matcher(compiled)
    new_ns = time.perf_counter_ns() - start
    mask_ns, adv_ns, n_allowed = [], [], []
    for tid in ids:
        t0 = time.perf_counter_ns()
        engine.mask(m)
        t1 = time.perf_counter_ns()
        ok = engine.advance(m, tid)
        t2 = time.perf_counter_ns()
        mask_ns.append(t1 - t0)
        adv_ns.append(t2 - t1)
        bits = allowed(engine.words_view(), vocab)
        if not ok or not bits[tid]:
            raise RuntimeError(f"{engine.name}: token {tid} (step {len(mask_ns)}) rejected; allowed={bits[tid]}")
        n_allowed.append(int(bits.sum()))
    engine.mask(m)
    final = allowed(engine.words_view(), vocab)
    return {"new_ns": new_ns, "mask_ns": mask_ns, "advance_ns": adv_ns, "allowed": n_allowed, "final": final}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def bench(
    vocab: Vocab, engines: list[Llg | Xgr], schema_name: str, ws: str, compiles: int, repeats: int
) -> list[dict[str, Any]]:
    schema, doc = SCHEMAS[schema_name]
    text = json.dumps(doc)
    ids = vocab.tokenizer.encode(text, add_special_tokens=False).ids
    compile_ms: dict[str, list[float]] = {e.name: [] for e in engines}
    compiled: dict[str, Any] = {}
    for i in range(compiles):
        for e in engines if i % 2 == 0 else engines[::-1]:
            start = time.perf_counter()
            compiled[e.name] = e.compile(schema, ws)
            compile_ms[e.name].append((time.perf_counter() - start) * 1e3)
    runs: dict[str, list[dict[str, Any]]] = {e.name: [] for e in engines}
    gc.disable()
    try:
        for i in range(repeats):
            for e in engines if i % 2 == 0 else engines[::-1]:  # ABBA against drift
                runs[e.name].append(replay(e, compiled[e.name], ids, vocab.size))
    finally:
        gc.enable()
    rows = []
    for e in engines:
        rs = runs[e.name]
        step_us = [(m + a) / 1e3 for r in rs for m, a in zip(r["mask_ns"], r["advance_ns"], strict=True)]
        mask_us = [m / 1e3 for r in rs for m in r["mask_ns"]]
        adv_us = [a / 1e3 for r in rs for a in r["advance_ns"]]
        first_us = [(r["mask_ns"][0] + r["advance_ns"][0]) / 1e3 for r in rs]
        doc_ms = [(sum(r["mask_ns"]) + sum(r["advance_ns"]) + r["new_ns"]) / 1e6 for r in rs]
        final = rs[-1]["final"]
        rows.append(
            {
                "engine": e.name,
                "tokenizer": vocab.name,
                "vocab": vocab.size,
                "schema": schema_name,
                "whitespace": ws,
                "tokens": len(ids),
                "compiles": compiles,
                "repeats": repeats,
                "compile_ms_median": pct(compile_ms[e.name], 50),
                "compile_ms_first": compile_ms[e.name][0],
                "compile_ms": compile_ms[e.name],
                "step_us_p50": pct(step_us, 50),
                "step_us_p99": pct(step_us, 99),
                "step_us_mean": float(np.mean(step_us)),
                "mask_us_p50": pct(mask_us, 50),
                "advance_us_p50": pct(adv_us, 50),
                "first_step_us_median": pct(first_us, 50),
                "doc_ms_median": pct(doc_ms, 50),
                "doc_ms": doc_ms,
                "first_step_us": first_us,
                "allowed_tokens_mean": float(np.mean(rs[-1]["allowed"])),
                "final_mask_allows": int(final.sum()),
                "final_mask_allows_eos": bool(final[vocab.eos]),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, nargs="+", default=TOKENIZERS, help="tokenizer.json files")
    parser.add_argument("--schema", nargs="+", default=list(SCHEMAS), choices=list(SCHEMAS))
    parser.add_argument("--whitespace", nargs="+", default=list(WHITESPACE), choices=list(WHITESPACE))
    parser.add_argument("--compiles", type=int, default=3, help="cold compiles per schema and engine")
    parser.add_argument("--repeats", type=int, default=5, help="replays of the document per engine")
    parser.add_argument("--xgr-numpy", action="store_true", help="numpy bitmask for xgrammar even with torch")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "grammar_engines.json")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    setup: list[dict[str, Any]] = []
    for path in args.tokenizer:
        vocab = load_vocab(path)
        start = time.perf_counter()
        llg = Llg(vocab)
        llg_s = time.perf_counter() - start
        start = time.perf_counter()
        xg = Xgr(vocab, args.xgr_numpy)
        xgr_s = time.perf_counter() - start
        setup.append(
            {"tokenizer": vocab.name, "vocab": vocab.size, "eos": vocab.eos, "llguidance_setup_ms": llg_s * 1e3}
            | {"xgrammar_setup_ms": xgr_s * 1e3, "xgrammar_tokenizer_info": xg.info_source}
            | {"xgrammar_bitmask": xg.bitmask_kind}
        )
        for ws in args.whitespace:
            for schema in args.schema:
                rows += bench(vocab, [llg, xg], schema, ws, args.compiles, args.repeats)
    print(f"{'tokenizer':<14}{'vocab':>7} {'schema':<8}{'ws':<9}{'engine':<12}{'tok':>5}{'compile ms':>12}", end="")
    print(f"{'µs/tok p50':>12}{'mean':>8}{'p99':>8}{'1st tok':>9}{'doc ms':>8}{'allowed':>9}")
    for r in rows:
        print(
            f"{r['tokenizer'][:13]:<14}{r['vocab']:>7} {r['schema']:<8}{r['whitespace']:<9}{r['engine']:<12}"
            f"{r['tokens']:>5}{r['compile_ms_median']:>12.1f}{r['step_us_p50']:>12.1f}{r['step_us_mean']:>8.1f}"
            f"{r['step_us_p99']:>8.1f}{r['first_step_us_median']:>9.0f}{r['doc_ms_median']:>8.2f}"
            f"{r['allowed_tokens_mean']:>9.0f}"
        )
    for s in setup:
        print(
            f"{s['tokenizer']}: tokenizer setup llguidance {s['llguidance_setup_ms']:.0f} ms, "
            f"xgrammar {s['xgrammar_setup_ms']:.0f} ms ({s['xgrammar_tokenizer_info']}), "
            f"bitmask {s['xgrammar_bitmask']}"
        )
    torch_version = version("torch") if HAS_TORCH else None
    meta = {
        "llguidance": version("llguidance"),
        "xgrammar": version("xgrammar"),
        "xgrammar_import": XGR_IMPORT,
        "torch": torch_version,
        "tokenizers": version("tokenizers"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "whitespace_modes": {k: {"llguidance": v[0], "xgrammar": v[1]} for k, v in WHITESPACE.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "setup": setup, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
