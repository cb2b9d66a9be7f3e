import { describe, expect, it } from 'vitest';
import { encodeWav, mixDown, wavBytes } from './audio';

describe('encodeWav', () => {
	it('writes a 16-bit mono PCM header and the clipped, scaled samples', () => {
		const view = new DataView(wavBytes(new Float32Array([0, 0.5, -1, 2]), 16000));
		const tag = (at: number) => String.fromCharCode(...new Uint8Array(view.buffer, at, 4));
		expect([tag(0), tag(8), tag(12), tag(36)]).toEqual(['RIFF', 'WAVE', 'fmt ', 'data']);
		expect(view.getUint32(4, true)).toBe(36 + 8);
		expect([view.getUint16(20, true), view.getUint16(22, true), view.getUint32(24, true)]).toEqual([1, 1, 16000]);
		expect([view.getUint32(28, true), view.getUint16(32, true), view.getUint16(34, true)]).toEqual([32000, 2, 16]);
		expect(view.getUint32(40, true)).toBe(8);
		const samples = [0, 1, 2, 3].map((i) => view.getInt16(44 + i * 2, true));
		expect(samples).toEqual([0, 16384, -32767, 32767]);
	});
	it('is a WAV blob', () => {
		const wav = encodeWav(new Float32Array(10), 16000);
		expect([wav.type, wav.size]).toEqual(['audio/wav', 64]);
	});
});

describe('mixDown', () => {
	it('averages the channels', () => {
		expect(Array.from(mixDown([new Float32Array([1, 0]), new Float32Array([0, -1])]))).toEqual([0.5, -0.5]);
	});
	it('keeps one channel as it is', () => {
		const one = new Float32Array([0.25]);
		expect(mixDown([one])).toBe(one);
	});
});
