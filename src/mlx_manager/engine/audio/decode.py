"""Uploaded audio to 16 kHz mono float32 samples. No MLX here.

miniaudio decodes WAV, FLAC, MP3 and Ogg Vorbis; soundfile (libsndfile, already here for speech out) decodes Ogg
Opus; PyAV (FFmpeg's libraries in its wheel) decodes what phones and browsers record: MP4/M4A (AAC, ALAC) and
WebM/Matroska (Opus, Vorbis). A file cut short is a 400 where its container says how long it is."""

from __future__ import annotations

import io
import struct

import miniaudio
import numpy as np

from mlx_manager.engine.errors import InvalidRequestError

SAMPLE_RATE = 16_000
FORMATS = "WAV, FLAC, MP3, Ogg Vorbis, Ogg Opus, MP4/M4A or WebM"
# Leading bytes of containers nothing here decodes, and what to call them in the 400.
_REFUSED = ((b"#!AMR", "AMR"), (b"caff", "CAF"))
_MATROSKA = b"\x1a\x45\xdf\xa3"


def _bad(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param="file")


def _truncated(what: str, declared: str, arrived: str) -> InvalidRequestError:
    return _bad(f"The audio file is truncated: its {what} declares {declared}, {arrived} arrived.")


def _refuse_unsupported(data: bytes) -> None:
    name = next((n for m, n in _REFUSED if data.startswith(m)), None)
    if name is not None:
        raise _bad(f"{name} audio is not supported; send {FORMATS} (WAV is what a browser can always make).")


def _check_riff(data: bytes) -> None:
    """A WAV file whose RIFF header promises more bytes than arrived was cut off (dr_wav would decode the rest)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) >= 12:
        declared = struct.unpack("<I", data[4:8])[0] + 8
        if declared != 0xFFFFFFFF + 8 and declared > len(data):  # 0xFFFFFFFF: a stream of unknown length
            raise _truncated("WAV header", f"{declared} bytes", str(len(data)))


def _check_ogg(data: bytes) -> None:
    """An Ogg stream ends with a page flagged end-of-stream; one cut short has none (or a partial last page)."""
    if not data.startswith(b"OggS"):
        return
    last = data.rfind(b"OggS")
    header = data[last : last + 27]
    complete = len(header) == 27 and len(data) >= last + 27 + header[26]
    if complete:
        body = sum(data[last + 27 : last + 27 + header[26]])
        complete = len(data) >= last + 27 + header[26] + body
    if not complete or not header[5] & 0x04:
        raise _bad("The audio file is truncated: its last Ogg page is incomplete or not the end of the stream.")


def _flac_seconds(data: bytes) -> float | None:
    """The length a FLAC file's STREAMINFO declares (None: unknown)."""
    if not data.startswith(b"fLaC") or len(data) < 26 or data[4] & 0x7F != 0:
        return None
    rate = int.from_bytes(data[18:21], "big") >> 4
    total = int.from_bytes(data[21:26], "big") & 0xF_FFFF_FFFF
    return total / rate if rate and total else None


def _mp3_bytes(data: bytes) -> tuple[int, int] | None:
    """Where the first MPEG frame starts and the stream size its Xing/Info header declares (None: no such header)."""
    start = 10 + int.from_bytes(bytes(b & 0x7F for b in data[6:10]), "big") if data.startswith(b"ID3") else 0
    if start + 4 > len(data) or data[start] != 0xFF or data[start + 1] & 0xE0 != 0xE0:
        return None
    for tag in (b"Xing", b"Info"):
        at = data.find(tag, start, start + 200)
        if at >= 0 and len(data) >= at + 16:
            flags = int.from_bytes(data[at + 4 : at + 8], "big")
            if flags & 0x2:
                offset = at + 8 + (4 if flags & 0x1 else 0)
                return start, int.from_bytes(data[offset : offset + 4], "big")
    return None


def _check_declared_length(data: bytes, samples: np.ndarray) -> None:
    flac = _flac_seconds(data)
    decoded = samples.size / SAMPLE_RATE
    if flac is not None and decoded < flac - 0.05:
        raise _truncated("FLAC header", f"{flac:.2f} s", f"{decoded:.2f} s")
    mp3 = _mp3_bytes(data)
    if mp3 is not None and len(data) - mp3[0] < mp3[1] * 0.99:  # LAME's own check allows 1% slack
        raise _truncated("MP3 Xing/Info header", f"{mp3[1]} bytes of frames", str(len(data) - mp3[0]))


def _opus(data: bytes) -> np.ndarray:
    """Ogg Opus through libsndfile, then to 16 kHz mono as miniaudio converts."""
    import soundfile

    try:
        frames, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise _bad(f"The file could not be decoded as Ogg Opus: {exc}") from exc
    mono = np.ascontiguousarray(frames.mean(axis=1), dtype=np.float32)
    if rate == SAMPLE_RATE or mono.size == 0:
        return mono
    f32 = miniaudio.SampleFormat.FLOAT32
    out = miniaudio.convert_frames(f32, 1, rate, mono.tobytes(), f32, 1, SAMPLE_RATE)
    return np.frombuffer(bytes(out), dtype=np.float32)


def _ffmpeg(data: bytes, container: str) -> np.ndarray:
    """MP4/M4A and WebM/Matroska through PyAV, resampled to 16 kHz mono; a container that declares more than
    decodes was cut short."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as source:
            if not source.streams.audio:
                raise _bad(f"The {container} file has no audio stream.")
            stream = source.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            pieces = [
                out.to_ndarray().reshape(-1) for frame in source.decode(stream) for out in resampler.resample(frame)
            ]
            pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
            declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
            if declared is None and source.duration:  # WebM declares it for the whole segment only
                declared = source.duration / av.time_base
    except av.FFmpegError as exc:
        raise _bad(f"The file could not be decoded as {container}: {exc}") from exc
    samples = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
    decoded = samples.size / SAMPLE_RATE
    if declared is not None and decoded < declared - 0.1:
        raise _truncated(f"{container} header", f"{declared:.2f} s", f"{decoded:.2f} s")
    return samples


def _decode(data: bytes) -> np.ndarray:
    if data.startswith(b"OggS") and b"OpusHead" in data[:200]:
        return _opus(data)
    if data[4:8] == b"ftyp":
        return _ffmpeg(data, "MP4/M4A")
    if data.startswith(_MATROSKA):
        return _ffmpeg(data, "WebM/Matroska")
    try:
        info = miniaudio.decode(
            data, output_format=miniaudio.SampleFormat.FLOAT32, nchannels=1, sample_rate=SAMPLE_RATE
        )
    except miniaudio.MiniaudioError as exc:
        raise _bad(f"The file could not be decoded as audio ({FORMATS}): {exc}") from exc
    return np.frombuffer(info.samples, dtype=np.float32)


def decode_audio(data: bytes, max_seconds: float | None = None) -> np.ndarray:
    """Samples in [-1, 1] at 16 kHz, mono; a 400 naming `file` for anything that is not decodable audio, and
    naming max_audio_seconds for audio longer than that."""
    if not data:
        raise _bad("The audio file is empty.")
    _refuse_unsupported(data)
    _check_riff(data)
    _check_ogg(data)
    samples = _decode(data)
    if samples.size == 0:
        raise _bad("The audio file holds no samples.")
    _check_declared_length(data, samples)
    if not np.isfinite(samples).all():
        raise _bad("The audio file holds samples that are not finite numbers.")
    seconds = samples.size / SAMPLE_RATE
    if max_seconds is not None and seconds > max_seconds:
        raise _bad(
            f"The audio lasts {seconds:.1f} s, longer than the server's limit of {max_seconds:g} s (max_audio_seconds)."
        )
    return samples
