// What a chat sends to the model: its messages, less the sends that failed, with images as content parts.
import type { ChatMessage, Part } from './chat';

export interface WireMessage {
	role: string;
	content: string | Part[];
}

export function hasOutput(m: ChatMessage): boolean {
	return !!(m.content || m.reasoning || m.toolCalls?.length);
}

/** A user message whose reply came to nothing (an error, stopped or cut off before the first token): it is shown
 * as not sent, to edit or remove, and left out of what later messages send, so that it never fails again (an image
 * a model refused) and roles keep alternating. `live`: the index of the reply streaming now, not a failure yet. */
export function notSent(messages: ChatMessage[], index: number, live = -1): boolean {
	const m = messages[index];
	const next = messages[index + 1];
	return m?.role === 'user' && next?.role === 'assistant' && !hasOutput(next) && index + 1 !== live;
}

export function wire(m: ChatMessage): WireMessage {
	if (!m.images?.length) return { role: m.role, content: m.content };
	const parts: Part[] = [{ type: 'text', text: m.content }];
	for (const url of m.images) parts.push({ type: 'image_url', image_url: { url } });
	return { role: m.role, content: parts };
}

/** The conversation to send: the system prompt, then every message that got somewhere. */
export function history(messages: ChatMessage[], system?: string | null): WireMessage[] {
	const out: WireMessage[] = system?.trim() ? [{ role: 'system', content: system }] : [];
	messages.forEach((m, i) => {
		if (m.role === 'user' && notSent(messages, i)) return;
		if (m.role === 'assistant' && !hasOutput(m)) return;
		out.push(wire(m));
	});
	return out;
}

/** A new chat's title: the first line of its first message. */
export function titleFrom(text: string, images: number): string {
	const line = text.trim().split('\n')[0].trim();
	if (!line) return images ? 'Image' : 'New chat';
	return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}
