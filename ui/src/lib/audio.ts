// Voice in the chat: a recording to WAV (the server decodes WAV everywhere; a browser records WebM or MP4),
// transcribed by a speech-to-text model, and a reply spoken by a text-to-speech model.
import { authFetch, problemText } from './api/client';

export const WAV_RATE = 16_000; // Whisper's rate: nothing to resample on the server

/** 16-bit PCM mono WAV of samples in [-1, 1]. */
export function encodeWav(samples: Float32Array, rate: number): Blob {
	return new Blob([wavBytes(samples, rate)], { type: 'audio/wav' });
}

export function wavBytes(samples: Float32Array, rate: number): ArrayBuffer {
	const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
	const text = (at: number, s: string) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
	text(0, 'RIFF');
	view.setUint32(4, 36 + samples.length * 2, true);
	text(8, 'WAVE');
	text(12, 'fmt ');
	view.setUint32(16, 16, true); // the fmt chunk's size
	view.setUint16(20, 1, true); // PCM
	view.setUint16(22, 1, true); // mono
	view.setUint32(24, rate, true);
	view.setUint32(28, rate * 2, true); // bytes per second
	view.setUint16(32, 2, true); // bytes per frame
	view.setUint16(34, 16, true); // bits per sample
	text(36, 'data');
	view.setUint32(40, samples.length * 2, true);
	samples.forEach((s, i) => view.setInt16(44 + i * 2, Math.round(Math.max(-1, Math.min(1, s)) * 32767), true));
	return view.buffer;
}

/** The channels of a decoded recording averaged to one. */
export function mixDown(channels: Float32Array[]): Float32Array {
	if (channels.length === 1) return channels[0];
	const out = new Float32Array(channels[0]?.length ?? 0);
	for (const ch of channels) ch.forEach((s, i) => (out[i] += s / channels.length));
	return out;
}

/** A MediaRecorder's recording (WebM/Opus in Chromium) decoded by the browser at 16 kHz, as WAV. */
export async function recordingToWav(recording: Blob): Promise<Blob> {
	const decoder = new OfflineAudioContext(1, 1, WAV_RATE); // decodes and resamples to its own rate
	const buffer = await decoder.decodeAudioData(await recording.arrayBuffer());
	const channels = Array.from({ length: buffer.numberOfChannels }, (_, i) => buffer.getChannelData(i));
	return encodeWav(mixDown(channels), WAV_RATE);
}

async function failure(r: Response, what: string): Promise<Error> {
	const body = await r.json().catch(() => null);
	return new Error(problemText(body, `${what} failed (${r.status})`));
}

/** The text of a WAV recording, by the speech-to-text model. */
export async function transcribe(model: string, wav: Blob): Promise<string> {
	const form = new FormData();
	form.append('model', model);
	form.append('file', wav, 'recording.wav');
	const r = await authFetch('/v1/audio/transcriptions', { method: 'POST', body: form });
	if (!r.ok) throw await failure(r, 'Transcription');
	return String((await r.json()).text ?? '').trim();
}

/** A reply spoken by the text-to-speech model, as a WAV file. */
export async function speak(model: string, text: string, signal?: AbortSignal): Promise<Blob> {
	const r = await authFetch('/v1/audio/speech', {
		method: 'POST',
		headers: { 'Content-Type': 'application/json' },
		body: JSON.stringify({ model, input: text, voice: 'default', response_format: 'wav' }),
		signal
	});
	if (!r.ok) throw await failure(r, 'Speech');
	return await r.blob();
}
