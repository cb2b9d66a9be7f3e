// The numbers under a reply: tokens, decode speed from the first token on, and the wait for that first token.
import type { ChatMessage } from './chat';

export interface StatPart {
	key: 'tokens' | 'rate' | 'ttft' | 'note';
	text: string;
}

/** Decode tokens/s: tokens after the first over the time since it (the wait before it is not decoding). */
export function decodeRate(tokens: number | undefined, decodeMs: number | undefined): number | undefined {
	if (!tokens || tokens < 2 || !decodeMs) return undefined;
	return (tokens - 1) / (decodeMs / 1000);
}

export function seconds(ms: number): string {
	return ms < 10_000 ? (ms / 1000).toFixed(2) : (ms / 1000).toFixed(1);
}

/** A finished reply's numbers; nothing while it streams. A reply cut off by a reload says "interrupted". */
export function statParts(m: ChatMessage): StatPart[] {
	const parts: StatPart[] = [];
	if (m.completionTokens) parts.push({ key: 'tokens', text: `${m.completionTokens} tokens` });
	const rate = decodeRate(m.completionTokens, m.decodeMs);
	if (rate !== undefined) parts.push({ key: 'rate', text: `${rate.toFixed(1)} tokens/s` });
	if (m.ttftMs !== undefined) parts.push({ key: 'ttft', text: `first token after ${seconds(m.ttftMs)} s` });
	if (m.status === 'stopped') parts.push({ key: 'note', text: 'stopped' });
	return parts;
}

export function statsLine(m: ChatMessage): string {
	return statParts(m)
		.map((p) => p.text)
		.join(' · ');
}

/** Cut short by max_tokens: the model had more to say. */
export function wasCut(m: ChatMessage): boolean {
	return m.finishReason === 'length';
}
