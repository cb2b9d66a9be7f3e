// Server-sent events over fetch, so that the session token goes in a header (EventSource cannot send one).
import { authFetch } from './api/client';

export interface SseEvent {
	event: string;
	data: string;
}

/** Splits a text stream, arriving in arbitrary pieces, into events: one per `data:` line (the servers here send one
 * line of JSON per event), named by the `event:` line before it, else `message`. Comments and other fields are skipped. */
export class SseParser {
	private buffer = '';
	private event = 'message';

	push(text: string): SseEvent[] {
		this.buffer += text;
		const lines = this.buffer.split(/\r?\n/);
		this.buffer = lines.pop() ?? '';
		const events: SseEvent[] = [];
		for (const line of lines) {
			if (line === '') this.event = 'message';
			else if (line.startsWith('event:')) this.event = line.slice(6).trim();
			else if (line.startsWith('data:')) {
				events.push({ event: this.event, data: line.slice(5).trim() });
				this.event = 'message';
			}
		}
		return events;
	}
}

/** Reads a stream of events to its end, passing each one's name and the payload's JSON to onEvent. */
export async function readStream(
	body: ReadableStream<BufferSource>,
	onEvent: (event: string, data: string) => void
): Promise<void> {
	const reader = body.pipeThrough(new TextDecoderStream()).getReader();
	const parser = new SseParser();
	for (;;) {
		const { value, done } = await reader.read();
		if (done) return;
		for (const e of parser.push(value)) onEvent(e.event, e.data);
	}
}

export async function readEvents(
	url: string,
	onEvent: (event: string, data: unknown) => void,
	signal: AbortSignal
): Promise<void> {
	const response = await authFetch(url, { signal, headers: { Accept: 'text/event-stream' } });
	if (!response.ok || !response.body) throw new Error(`${response.status} ${response.statusText}`);
	await readStream(response.body, (event, data) => onEvent(event, JSON.parse(data)));
}
