import { describe, expect, it } from 'vitest';
import type { ChatMessage } from './chat';
import { history, notSent, titleFrom } from './chatHistory';

const IMG = 'data:image/png;base64,AAAA';

describe('history', () => {
	it('leaves out a send that failed, so the next message does not fail with it', () => {
		const messages: ChatMessage[] = [
			{ role: 'user', content: 'Look', images: [IMG] },
			{ role: 'assistant', content: '', status: 'error', error: 'refused' },
			{ role: 'user', content: 'Hello' }
		];
		expect(notSent(messages, 0)).toBe(true);
		expect(history(messages, 'Be brief')).toEqual([
			{ role: 'system', content: 'Be brief' },
			{ role: 'user', content: 'Hello' }
		]);
	});

	it('keeps images as parts and partial replies', () => {
		const messages: ChatMessage[] = [
			{ role: 'user', content: 'What is this?', images: [IMG] },
			{ role: 'assistant', content: 'A cat', status: 'interrupted' }
		];
		expect(history(messages)).toEqual([
			{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: IMG } }] },
			{ role: 'assistant', content: 'A cat' }
		]);
	});

	it('does not call a reply still on its way a failure', () => {
		const messages: ChatMessage[] = [
			{ role: 'user', content: 'Hi' },
			{ role: 'assistant', content: '', status: 'streaming' }
		];
		expect(notSent(messages, 0, 1)).toBe(false);
		expect(notSent(messages, 0)).toBe(true); // read back after a reload: it came to nothing
	});
});

describe('titleFrom', () => {
	it('takes the first line, shortened', () => {
		expect(titleFrom('  Plan a trip\nto Oslo', 0)).toBe('Plan a trip');
		expect(titleFrom('x'.repeat(80), 0)).toHaveLength(60);
		expect(titleFrom('', 1)).toBe('Image');
	});
});
