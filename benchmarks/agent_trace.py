"""Agent-loop benchmark: scripted multi-turn coding-agent sessions (Claude Code / Codex shaped) against our server,
`mlx_lm server` and vllm-mlx, with per-turn TTFT, cached tokens, session time and a server restart between turns.

    python benchmarks/agent_trace.py [--servers ours,mlx-lm,vllm-mlx] [--formats openai,anthropic] [--repeats 3]
    python benchmarks/agent_trace.py --url http://127.0.0.1:8080 --model NAME    # any running server, no restart
    python benchmarks/agent_trace.py --replies real --reply-tokens 100,400     # the model's replies fed back

The model is the embedded SmolLM2-135M-Instruct imported from its GGUF as float32, with a ChatML chat template that
renders tools (Hermes style), so all servers template tool definitions, calls and results the same way.
Writes benchmarks/agent-trace.json (summary) and benchmarks/results/agent-trace/raw.json (every request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from peers import ROOT, VENVS, Managed, ours, peer, served_model_id
from rich.console import Console

from mlx_manager.bench.agent import AgentSession, AgentShape, make_sessions
from mlx_manager.bench.agent_report import markdown, session_stats, session_table, turn_stats, turn_table
from mlx_manager.bench.agent_run import AgentOptions, AgentRun, TurnRecord, run_agents
from mlx_manager.bench.agent_wire import TurnResult, openai_body

console = Console(width=200)
GGUF = ROOT / ".cache" / "test-assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = ROOT / ".cache" / "bench-models" / "agent" / "SmolLM2-135M-Instruct-f32"
OUT = ROOT / "benchmarks" / "results" / "agent-trace"

# ChatML with tools rendered the Hermes / Qwen2.5 way. SmolLM2's own template drops `tools`, so each server would
# otherwise put them somewhere else (ours injects them into the system message, the peers leave them out).
AGENT_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with"
    " function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within"
    ' <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\":'
    " <args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>assistant' }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls or [] %}"
    "{%- set call = tool_call.function if tool_call.function is defined else tool_call %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' + call.name + \'", "arguments": \' }}'
    "{%- if call.arguments is string %}{{- call.arguments }}{%- else %}{{- call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def prepare_model(folder: Path = MODEL) -> Path:
    """SmolLM2 imported as float32 (once), with the tools-aware template written into its tokenizer config."""
    if not (folder / "model.safetensors.index.json").exists() and not (folder / "model.safetensors").exists():
        from mlx_manager.manager.gguf_import import import_gguf

        import_gguf(GGUF, folder.parent, folder.name, dtype="float32", overwrite=True)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    if config.get("chat_template") != AGENT_TEMPLATE:
        config["chat_template"] = AGENT_TEMPLATE
        config_path.write_text(json.dumps(config, indent=2))
    return folder


def last_prompt_tokens(sessions: list[AgentSession], model: Path) -> list[int]:
    """Each session's last request as the template renders it, in tokens (must fit the model's context)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    counts = []
    for session in sessions:
        body = openai_body(session, len(session.turns) - 1, "m", 1, volatile=True)
        ids = tokenizer.apply_chat_template(body["messages"], tools=body["tools"], add_generation_prompt=True)
        counts.append(len(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return counts


def speaks_anthropic(base: str, model: str) -> bool:
    """Whether POST /v1/messages exists (mlx-lm's server answers 404)."""
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}
    return httpx.post(f"{base}/v1/messages", json=body, timeout=300).status_code == 200


def start_server(name: str, model: Path, home: Path, log: Path, args: argparse.Namespace) -> Managed:
    if name == "ours":
        return ours(model, home, log, args.ours_arg, args.ours_src)
    if name == "vllm-mlx":
        # vllm-mlx saves its prefix cache here at shutdown and loads it at start: a run starts without it, like
        # ours with a fresh home, and keeps it across its own restart.
        safe = str(model).replace("/", "--")
        shutil.rmtree(Path.home() / ".cache" / "vllm-mlx" / "prefix_cache" / safe, ignore_errors=True)
    return peer(name, model, log, args.vllm_arg if name == "vllm-mlx" else [])


def one_run(
    name: str, fmt: str, sessions: list[AgentSession], args: argparse.Namespace, model: Path, home: Path
) -> AgentRun | str:
    """A fresh server (fresh home for ours), every session's turns, a restart; the reason when it cannot run."""
    log = home.with_suffix(".log")
    server = start_server(name, model, home, log, args)
    try:
        base = server.start()
        model_id = model.name if name == "ours" else served_model_id(base, str(model))
        if fmt == "anthropic" and not speaks_anthropic(base, model_id):
            return "no /v1/messages"
        options = agent_options(args, model_id, fmt)
        label = "mlx-manager" if name == "ours" else name
        run = asyncio.run(run_agents(label, base, sessions, options, args.restart_before, server.restart))
    finally:
        server.stop()
    if name == "vllm-mlx" and not args.parallel:
        fill_from_log(run, log.read_text(errors="replace"))
    return run


def agent_options(args: argparse.Namespace, model_id: str, fmt: str) -> AgentOptions:
    low, high = (int(x) for x in args.reply_tokens.split(","))
    return AgentOptions(
        model_id,
        fmt,
        args.max_tokens,
        not args.no_volatile,
        parallel=args.parallel,
        real_replies=args.replies == "real",
        reply_tokens=(low, high),
        seed=args.seed,
    )


# vllm-mlx 0.6 reports no cached tokens (and no prompt tokens in Anthropic streams) but logs each lookup.
_FETCH = re.compile(r"\[cache_fetch\] request=\S+ (HIT|MISS) prompt_tokens=(\d+)(?: cached=(\d+))?")


def fill_from_log(run: AgentRun, log: str) -> None:
    """Cached and prompt tokens of each request from vllm-mlx's log, in order (warm-ups left out)."""
    fetches = [(int(m[2]), int(m[3] or 0)) for m in _FETCH.finditer(log) if int(m[2]) > 64]
    if len(fetches) != len(run.records):
        return
    for record, (prompt, cached) in zip(run.records, fetches, strict=True):
        record.result.prompt_tokens = record.result.prompt_tokens or prompt
        record.result.cached_tokens = record.result.cached_tokens or cached
        record.from_log = True


def versions() -> dict[str, str]:
    found = {"commit": _git("rev-parse", "HEAD"), "dirty": _git("status", "--porcelain", "src/mlx_manager")}
    for name, package in (("mlx-lm", "mlx-lm"), ("vllm-mlx", "vllm-mlx")):
        python = VENVS / name / "bin" / "python"
        if python.exists():
            code = f"import importlib.metadata as m; print(m.version({package!r}))"
            found[name] = subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip()
    return found


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def ratios(rows: list[Any], restart_before: int | None) -> list[str]:
    """Ours against the best peer per turn (goal >= 3x from turn 2), and the turn after the restart against a warm
    hit of about its size: the next turn, warm again (goal <= 2x)."""
    lines = []
    medians = {(r.label, r.fmt, r.turn): r.ttft_median_s for r in rows}
    for fmt in dict.fromkeys(r.fmt for r in rows):
        turns = sorted({t for (label, f, t) in medians if f == fmt and label == "mlx-manager"})
        parts = []
        for turn in turns:
            peers = {lab: v for (lab, f, t), v in medians.items() if f == fmt and t == turn and lab != "mlx-manager"}
            if peers:
                best = min(peers, key=lambda k: peers[k])
                parts.append(f"turn {turn} {peers[best] / medians['mlx-manager', fmt, turn]:.2f}x ({best})")
        if parts:
            lines.append(f"{fmt}: best peer TTFT / ours (goal >= 3 from turn 2): " + ", ".join(parts))
        if not restart_before:
            continue
        for label in dict.fromkeys(r.label for r in rows if r.fmt == fmt):
            after = medians.get((label, fmt, restart_before))
            warm = medians.get((label, fmt, restart_before + 1)) or medians.get((label, fmt, restart_before - 1))
            if after and warm:
                lines.append(
                    f"{fmt} {label}: TTFT of the turn after the restart / a warm turn: {after / warm:.2f}x"
                    f" ({after:.1f} s vs {warm:.1f} s; goal <= 2 for ours)"
                )
    return lines


def load_raw(path: Path) -> tuple[list[AgentRun], dict[str, Any]]:
    """Runs back from raw.json, to summarise again without running."""
    data = json.loads(path.read_text())
    runs = []
    for item in data["runs"]:
        run = AgentRun(item["label"], item["fmt"], error=item.get("error", ""))
        for rec in item["records"]:
            head = {k: rec.pop(k) for k in ("agent", "turn", "after_restart", "from_log")}
            run.records.append(TurnRecord(result=TurnResult(**rec), **head))
        # Sequential turns: the session's wall time is about the sum of its requests' latencies.
        run.session_s = item.get("session_s") or sum(r.result.latency for r in run.records)
        run.restart_s = item.get("restart_s", 0.0)
        runs.append(run)
    return runs, data["meta"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="ours,mlx-lm,vllm-mlx")
    parser.add_argument("--formats", default="openai,anthropic")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--system-tokens", type=int, default=800)
    parser.add_argument("--result-tokens", default="250,900", help="Tool results per turn, min,max tokens.")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument(
        "--replies",
        choices=("scripted", "real"),
        default="scripted",
        help="real: send back the model's own reply text (tool calls and results stay scripted), as an agent does.",
    )
    parser.add_argument("--reply-tokens", default="100,400", help="--replies real: max_tokens per request, min,max.")
    parser.add_argument("--restart-before", type=int, default=5, help="Restart the server before this turn; 0: no.")
    parser.add_argument("--max-context", type=int, default=7000, help="Refuse sessions longer than this.")
    parser.add_argument("--no-volatile", action="store_true", help="Leave out the per-request billing line.")
    parser.add_argument("--parallel", action="store_true", help="Send every agent's turn N at once.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ours-arg", action="append", default=[], help="Extra `mlx-manager serve` argument.")
    parser.add_argument("--ours-src", type=Path, help="Run our server from this src/ folder (a commit's snapshot).")
    parser.add_argument("--vllm-arg", action="append", default=[], help="Extra `vllm-mlx serve` argument.")
    parser.add_argument("--url", help="Drive this running server instead (no restart).")
    parser.add_argument("--model", help="With --url: the model name the server knows.")
    parser.add_argument("--report-only", action="store_true", help="Summarise the last raw.json again; no runs.")
    parser.add_argument("--summary", type=Path, default=ROOT / "benchmarks" / "agent-trace.json")
    args = parser.parse_args()
    if args.report_only:
        runs, meta = load_raw(OUT / "raw.json")
        restart = meta["args"].get("restart_before") or None
        write_results(runs, meta, args.summary, restart, show=True, raw=False)
        return

    model = prepare_model()
    low, high = (int(x) for x in args.result_tokens.split(","))
    shape = AgentShape(args.agents, args.turns, args.system_tokens, result_tokens=(low, high), seed=args.seed)
    sessions = make_sessions(shape, model)
    lengths = last_prompt_tokens(sessions, model)
    console.print(f"last request per agent: {lengths} tokens")
    if max(lengths) > args.max_context:
        sys.exit(f"sessions reach {max(lengths)} tokens, over --max-context {args.max_context}")
    restart_before = args.restart_before or None

    runs: list[AgentRun] = []
    skipped: dict[str, str] = {}
    found = versions()  # the commit and peer versions the run starts with (others may commit meanwhile)
    if args.url:
        options = agent_options(args, args.model or model.name, args.formats.split(",")[0])
        runs.append(asyncio.run(run_agents("server", args.url.rstrip("/"), sessions, options)))
        restart_before = None
    else:
        names = [s for s in args.servers.split(",") if s]
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]  # spread drift over servers
            for name in order:
                for fmt in args.formats.split(","):
                    if f"{name}/{fmt}" in skipped:
                        continue
                    began = time.perf_counter()
                    home = OUT / "homes" / f"{name}-{fmt}-{repeat}-{int(time.time())}"
                    result = one_run(name, fmt, sessions, args, model, home)
                    if isinstance(result, str):
                        skipped[f"{name}/{fmt}"] = result
                        console.print(f"[yellow]{name} {fmt}: {result}[/yellow]")
                        continue
                    runs.append(result)
                    write_results(
                        runs, meta_of(args, shape, lengths, skipped, found), args.summary, restart_before, False
                    )
                    console.print(
                        f"repeat {repeat + 1} {name} {fmt}: {time.perf_counter() - began:.0f} s"
                        + (f" [red]{result.error}[/red]" if result.error else "")
                    )

    write_results(runs, meta_of(args, shape, lengths, skipped, found), args.summary, restart_before, show=True)


def meta_of(
    args: argparse.Namespace, shape: AgentShape, lengths: list[int], skipped: dict[str, str], found: dict[str, str]
) -> dict[str, Any]:
    return {
        **found,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "shape": asdict(shape),
        "last_request_tokens": lengths,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "skipped": skipped,
    }


def write_results(
    runs: list[AgentRun],
    meta: dict[str, Any],
    summary_path: Path,
    restart_before: int | None,
    show: bool,
    raw: bool = True,
) -> None:
    """The summary JSON (per-turn and per-session stats, goal ratios) and every request in raw.json."""
    rows = turn_stats(runs)
    sessions_rows = session_stats(runs)
    goals = ratios(rows, restart_before)
    if show:
        title = "TTFT median (min-max) over agents x repeats; cached tokens (range) / prompt tokens (median)"
        console.print(turn_table(rows, title))
        console.print(session_table(sessions_rows))
        for line in goals:
            console.print(line)
        for key, why in meta["skipped"].items():
            console.print(f"{key}: {why}")
        print(markdown(rows, sessions_rows, meta["skipped"]))
    summary = {
        "meta": meta,
        "goals": goals,
        "turns": [asdict(r) for r in rows],
        "sessions": [asdict(s) for s in sessions_rows],
    }
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1))
    if not raw:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    everything = [
        {
            **{k: getattr(r, k) for k in ("label", "fmt", "session_s", "restart_s", "error")},
            "records": [rec.as_dict() for rec in r.records],
        }
        for r in runs
    ]
    (OUT / "raw.json").write_text(json.dumps({"meta": meta, "runs": everything}, indent=1))
    if show:
        console.print(f"wrote {summary_path} and {OUT / 'raw.json'}")


if __name__ == "__main__":
    main()
