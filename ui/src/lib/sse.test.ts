import { describe, expect, it } from 'vitest';
import { SseParser, readStream } from './sse';

function streamOf(...pieces: string[]): ReadableStream<BufferSource> {
	const encoder = new TextEncoder();
	return new ReadableStream({
		start(controller) {
			for (const p of pieces) controller.enqueue(encoder.encode(p));
			controller.close();
		}
	});
}

describe('SseParser', () => {
	it('parses named and unnamed events', () => {
		const p = new SseParser();
		expect(p.push('event: progress\ndata: {"a":1}\n\ndata: {"b":2}\n\n')).toEqual([
			{ event: 'progress', data: '{"a":1}' },
			{ event: 'message', data: '{"b":2}' }
		]);
	});

	it('keeps a line split across pieces until it is whole', () => {
		const p = new SseParser();
		expect(p.push('event: compl')).toEqual([]);
		expect(p.push('eted\ndata: {"x"')).toEqual([]);
		expect(p.push(':1}\n\n')).toEqual([{ event: 'completed', data: '{"x":1}' }]);
	});

	it('handles CRLF line ends, comments and [DONE]', () => {
		const p = new SseParser();
		expect(p.push(': keep-alive\r\ndata: {"c":3}\r\n\r\ndata: [DONE]\r\n\r\n')).toEqual([
			{ event: 'message', data: '{"c":3}' },
			{ event: 'message', data: '[DONE]' }
		]);
	});

	it('forgets an event name at a blank line', () => {
		const p = new SseParser();
		expect(p.push('event: ping\n\ndata: 1\n')).toEqual([{ event: 'message', data: '1' }]);
	});
});

describe('readStream', () => {
	it('reads a byte stream to its end', async () => {
		const seen: [string, string][] = [];
		await readStream(streamOf('data: {"n":', '1}\n\nevent: done\ndata: {}\n\n'), (e, d) => seen.push([e, d]));
		expect(seen).toEqual([
			['message', '{"n":1}'],
			['done', '{}']
		]);
	});

	it('decodes multi-byte characters split across chunks', async () => {
		const bytes = new TextEncoder().encode('data: "héllo ✓"\n\n');
		const seen: string[] = [];
		const body = new ReadableStream<BufferSource>({
			start(c) {
				c.enqueue(bytes.slice(0, 9));
				c.enqueue(bytes.slice(9));
				c.close();
			}
		});
		await readStream(body, (_e, d) => seen.push(JSON.parse(d)));
		expect(seen).toEqual(['héllo ✓']);
	});
});
