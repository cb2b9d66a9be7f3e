import { describe, expect, it } from 'vitest';
import { decodeRate, statsLine, wasCut } from './chatStats';

describe('reply numbers', () => {
	it('counts decode speed from the first token on, apart from the wait for it', () => {
		// 11 tokens: the first after 4 s of waiting, the other 10 in 2 s: 5 tokens/s, not 11 / 6.
		const reply = { role: 'assistant' as const, content: 'x', completionTokens: 11, ttftMs: 4000, decodeMs: 2000 };
		expect(decodeRate(11, 2000)).toBe(5);
		expect(statsLine(reply)).toBe('11 tokens · 5.0 tokens/s · first token after 4.00 s');
	});

	it('says nothing of a speed it cannot know', () => {
		expect(decodeRate(1, 0)).toBeUndefined();
		expect(statsLine({ role: 'assistant', content: 'x', completionTokens: 1, ttftMs: 250, decodeMs: 0 })).toBe(
			'1 tokens · first token after 0.25 s'
		);
	});

	it('marks a stopped reply and one cut at max tokens', () => {
		expect(statsLine({ role: 'assistant', content: '', status: 'stopped' })).toBe('stopped');
		expect(wasCut({ role: 'assistant', content: 'x', finishReason: 'length' })).toBe(true);
		expect(wasCut({ role: 'assistant', content: 'x', finishReason: 'stop' })).toBe(false);
	});
});
