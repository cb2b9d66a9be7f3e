// Server-sent events over fetch, so that the session token goes in a header (EventSource cannot send one).
import { authFetch } from './api/client';

export async function readEvents(
	url: string,
	onEvent: (event: string, data: unknown) => void,
	signal: AbortSignal
): Promise<void> {
	const response = await authFetch(url, { signal, headers: { Accept: 'text/event-stream' } });
	if (!response.ok || !response.body) throw new Error(`${response.status} ${response.statusText}`);
	const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
	let buffer = '';
	let event = 'message';
	for (;;) {
		const { value, done } = await reader.read();
		if (done) return;
		buffer += value;
		const lines = buffer.split(/\r?\n/);
		buffer = lines.pop() ?? '';
		for (const line of lines) {
			if (line.startsWith('event:')) event = line.slice(6).trim();
			else if (line.startsWith('data:')) {
				onEvent(event, JSON.parse(line.slice(5).trim()));
				event = 'message';
			}
		}
	}
}
