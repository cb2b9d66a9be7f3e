import { describe, expect, it } from 'vitest';
import { applyChunk, statsLine, type ChatMessage } from './chat';

describe('applyChunk', () => {
	it('appends content and reasoning', () => {
		const reply: ChatMessage = { role: 'assistant', content: '' };
		expect(applyChunk(reply, { choices: [{ delta: { reasoning_content: 'think ' } }] })).toBe(true);
		applyChunk(reply, { choices: [{ delta: { reasoning_content: 'more' } }] });
		applyChunk(reply, { choices: [{ delta: { content: 'Hel' } }] });
		applyChunk(reply, { choices: [{ delta: { content: 'lo' } }] });
		expect(reply).toMatchObject({ content: 'Hello', reasoning: 'think more' });
	});

	it('assembles tool calls from pieces', () => {
		const reply: ChatMessage = { role: 'assistant', content: '' };
		applyChunk(reply, { choices: [{ delta: { tool_calls: [{ index: 0, id: 'c1', function: { name: 'get_', arguments: '{"ci' } }] } }] });
		applyChunk(reply, { choices: [{ delta: { tool_calls: [{ index: 0, function: { name: 'weather', arguments: 'ty":"Oslo"}' } }] } }] });
		applyChunk(reply, { choices: [{ delta: { tool_calls: [{ index: 1, id: 'c2', function: { name: 'now', arguments: '{}' } }] } }] });
		expect(reply.toolCalls).toEqual([
			{ id: 'c1', name: 'get_weather', arguments: '{"city":"Oslo"}' },
			{ id: 'c2', name: 'now', arguments: '{}' }
		]);
	});

	it('records an error and ignores chunks without a delta', () => {
		const reply: ChatMessage = { role: 'assistant', content: '' };
		expect(applyChunk(reply, { usage: { completion_tokens: 3 }, choices: [] })).toBe(false);
		applyChunk(reply, { error: { message: 'model went away' } });
		expect(reply.error).toBe('model went away');
		expect(reply.content).toBe('');
	});
});

describe('statsLine', () => {
	it('shows tokens per second', () => {
		expect(statsLine(20, 2, false)).toBe('20 tokens · 10.0 tokens/s');
	});
	it('marks a stopped answer', () => {
		expect(statsLine(5, 1, true)).toBe('5 tokens · 5.0 tokens/s · stopped');
		expect(statsLine(0, 1, true)).toBe('stopped');
	});
	it('has nothing to say about an empty answer', () => {
		expect(statsLine(0, 1, false)).toBeUndefined();
		expect(statsLine(3, 0, false)).toBe('3 tokens · – tokens/s');
	});
});
