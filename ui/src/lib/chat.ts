// Streaming /v1/chat/completions: server-sent chunks to content, reasoning and tool calls.
import { authFetch } from './api/client';
import { readStream } from './sse';

export type Part = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };
export interface ToolCall {
	id?: string;
	name: string;
	arguments: string;
}
export interface ChatMessage {
	role: 'system' | 'user' | 'assistant';
	content: string;
	images?: string[];
	reasoning?: string;
	toolCalls?: ToolCall[];
	stats?: string;
	error?: string;
	stopped?: boolean;
}

export interface StreamChunk {
	error?: { message?: string };
	usage?: { completion_tokens?: number };
	choices?: {
		delta?: {
			content?: string | null;
			reasoning_content?: string | null;
			tool_calls?: { index?: number; id?: string; function?: { name?: string; arguments?: string } }[];
		};
	}[];
}

export interface StreamOptions {
	model: string;
	messages: ChatMessage[];
	maxTokens?: number;
	temperature?: number;
	signal: AbortSignal;
	onUpdate: (m: ChatMessage) => void;
}

function wire(m: ChatMessage): { role: string; content: string | Part[] } {
	if (!m.images?.length) return { role: m.role, content: m.content };
	const parts: Part[] = [{ type: 'text', text: m.content }];
	for (const url of m.images) parts.push({ type: 'image_url', image_url: { url } });
	return { role: m.role, content: parts };
}

/** Folds one streamed chunk (OpenAI chat.completion.chunk) into the reply; true when it carried a delta. */
export function applyChunk(reply: ChatMessage, chunk: StreamChunk): boolean {
	if (chunk.error) reply.error = chunk.error.message ?? 'error';
	const delta = chunk.choices?.[0]?.delta;
	if (!delta) return false;
	if (delta.content) reply.content += delta.content;
	if (delta.reasoning_content) reply.reasoning = (reply.reasoning ?? '') + delta.reasoning_content;
	for (const call of delta.tool_calls ?? []) {
		reply.toolCalls ??= [];
		const index = call.index ?? reply.toolCalls.length;
		reply.toolCalls[index] ??= { id: call.id, name: '', arguments: '' };
		if (call.function?.name) reply.toolCalls[index].name += call.function.name;
		if (call.function?.arguments) reply.toolCalls[index].arguments += call.function.arguments;
	}
	return true;
}

/** The line under an answer: tokens and tokens/s, and whether it was stopped. */
export function statsLine(tokens: number, seconds: number, stopped: boolean): string | undefined {
	if (!tokens) return stopped ? 'stopped' : undefined;
	const rate = seconds > 0 ? (tokens / seconds).toFixed(1) : '–';
	return `${tokens} tokens · ${rate} tokens/s${stopped ? ' · stopped' : ''}`;
}

/** Streams one answer into `reply` (updated in place through onUpdate); resolves when it ends or is stopped. */
export async function streamChat(opts: StreamOptions, reply: ChatMessage): Promise<void> {
	const body: Record<string, unknown> = {
		model: opts.model,
		messages: opts.messages.map(wire),
		stream: true,
		stream_options: { include_usage: true }
	};
	if (opts.maxTokens) body.max_tokens = opts.maxTokens;
	if (opts.temperature != null) body.temperature = opts.temperature;
	const started = performance.now();
	let firstToken = 0;
	let chunks = 0;
	let completionTokens = 0;
	try {
		const response = await authFetch('/v1/chat/completions', {
			method: 'POST',
			headers: { 'Content-Type': 'application/json' },
			body: JSON.stringify(body),
			signal: opts.signal
		});
		if (!response.ok || !response.body) {
			const text = await response.text();
			let message = `${response.status} ${response.statusText}`;
			try {
				message = JSON.parse(text).error?.message ?? message;
			} catch {
				/* not JSON */
			}
			reply.error = message;
			opts.onUpdate(reply);
			return;
		}
		await readStream(response.body, (_event, data) => {
			if (data === '[DONE]') return;
			const chunk = JSON.parse(data);
			if (chunk.usage) completionTokens = chunk.usage.completion_tokens ?? completionTokens;
			if (!applyChunk(reply, chunk)) return;
			if (!firstToken) firstToken = performance.now();
			chunks++;
			opts.onUpdate(reply);
		});
	} catch (e) {
		if ((e as Error).name === 'AbortError') reply.stopped = true;
		else reply.error = (e as Error).message;
	}
	const tokens = completionTokens || chunks;
	reply.stats = statsLine(tokens, (performance.now() - (firstToken || started)) / 1000, !!reply.stopped);
	opts.onUpdate(reply);
}
