import { describe, expect, it } from 'vitest';
import { applyChunk, requestBody, type ChatMessage } from './chat';

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

describe('finish reason and request', () => {
	it('keeps why the reply ended', () => {
		const reply: ChatMessage = { role: 'assistant', content: '' };
		applyChunk(reply, { choices: [{ delta: { content: 'Hi' } }] });
		expect(applyChunk(reply, { choices: [{ finish_reason: 'length', delta: {} }] })).toBe(false);
		expect(reply.finishReason).toBe('length');
	});

	it('sends only the options set, and asks to continue a reply', () => {
		const signal = new AbortController().signal;
		const base = { model: 'm', messages: [], signal, onUpdate: () => {} };
		expect(requestBody({ ...base, options: { temperature: 0, max_tokens: null } })).toEqual({
			model: 'm',
			messages: [],
			stream: true,
			stream_options: { include_usage: true },
			temperature: 0
		});
		expect(requestBody({ ...base, options: {}, continueReply: true })).toMatchObject({ continue_final_message: true });
	});
});
