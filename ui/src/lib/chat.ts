// Streaming /v1/chat/completions: server-sent chunks to content, reasoning and tool calls, with the reply's timings.
import { authFetch } from './api/client';
import { readStream } from './sse';
import { modelErrorText } from './problems';

export type Part = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };
export interface ToolCall {
	id?: string | null;
	name: string;
	arguments: string;
}
// complete; streaming (being written, or cut off by a reload when read back); interrupted; stopped; error.
export type Status = 'complete' | 'streaming' | 'interrupted' | 'stopped' | 'error';
export interface ChatOptions {
	system_prompt?: string | null;
	temperature?: number | null;
	top_p?: number | null;
	max_tokens?: number | null;
}
export interface ChatMessage {
	key?: string; // the page's own, stable before the server's id exists
	id?: number; // the server's, once saved
	role: 'system' | 'user' | 'assistant';
	content: string;
	images?: string[];
	reasoning?: string;
	toolCalls?: ToolCall[];
	status?: Status;
	error?: string;
	model?: string;
	params?: ChatOptions;
	finishReason?: string;
	promptTokens?: number;
	completionTokens?: number;
	ttftMs?: number; // from the request to the first token
	decodeMs?: number; // from the first token to the last
}

export interface StreamChunk {
	error?: { message?: string };
	usage?: { completion_tokens?: number; prompt_tokens?: number };
	choices?: {
		finish_reason?: string | null;
		delta?: {
			content?: string | null;
			reasoning_content?: string | null;
			tool_calls?: { index?: number; id?: string; function?: { name?: string; arguments?: string } }[];
		};
	}[];
}

export interface StreamOptions {
	model: string;
	messages: { role: string; content: string | Part[] }[];
	options: ChatOptions;
	/** Continue `reply` (the last message sent) instead of answering: an interrupted or cut reply. */
	continueReply?: boolean;
	signal: AbortSignal;
	onFirstToken?: () => void;
	onUpdate: (m: ChatMessage) => void;
}

let made = 0;
/** A key for a message made here (the server's id comes later). */
export function newKey(): string {
	return `new-${++made}`;
}

/** Folds one streamed chunk (OpenAI chat.completion.chunk) into the reply; true when it carried a delta. */
export function applyChunk(reply: ChatMessage, chunk: StreamChunk): boolean {
	if (chunk.error) reply.error = chunk.error.message ?? 'error';
	const choice = chunk.choices?.[0];
	if (choice?.finish_reason) reply.finishReason = choice.finish_reason;
	const delta = choice?.delta;
	if (!delta) return false;
	let carried = false;
	if (delta.content) {
		reply.content += delta.content;
		carried = true;
	}
	if (delta.reasoning_content) {
		reply.reasoning = (reply.reasoning ?? '') + delta.reasoning_content;
		carried = true;
	}
	for (const call of delta.tool_calls ?? []) {
		reply.toolCalls ??= [];
		const index = call.index ?? reply.toolCalls.length;
		reply.toolCalls[index] ??= { id: call.id, name: '', arguments: '' };
		if (call.function?.name) reply.toolCalls[index].name += call.function.name;
		if (call.function?.arguments) reply.toolCalls[index].arguments += call.function.arguments;
		carried = true;
	}
	return carried;
}

/** The request body: the options set in the chat (unset ones come from the profile or the model). */
export function requestBody(opts: StreamOptions): Record<string, unknown> {
	const body: Record<string, unknown> = {
		model: opts.model,
		messages: opts.messages,
		stream: true,
		stream_options: { include_usage: true }
	};
	const o = opts.options;
	if (o.max_tokens) body.max_tokens = o.max_tokens;
	if (o.temperature != null) body.temperature = o.temperature;
	if (o.top_p != null) body.top_p = o.top_p;
	if (opts.continueReply) body.continue_final_message = true;
	return body;
}

/** The chat's fields by the labels the page gives them, for refusals in plain words. */
export const chatLabels: Record<string, string> = {
	max_tokens: 'Max tokens',
	temperature: 'Temperature',
	top_p: 'Top P',
	system_prompt: 'System prompt',
	messages: 'The message',
	title: 'Chat title'
};

async function errorText(response: Response): Promise<string> {
	const text = await response.text();
	try {
		return modelErrorText(JSON.parse(text), chatLabels, `${response.status} ${response.statusText}`);
	} catch {
		return `${response.status} ${response.statusText}`;
	}
}

/** Streams one answer into `reply` (updated in place through onUpdate); resolves when it ends, fails or is stopped.
 * The time to the first token is this request's. */
export async function streamChat(opts: StreamOptions, reply: ChatMessage): Promise<void> {
	const started = performance.now();
	let firstToken = 0;
	let lastToken = 0;
	let deltas = 0;
	let usage: StreamChunk['usage'];
	// Continuing adds to what the reply had; decode time too, so that the rate stays the whole reply's.
	const tokensBefore = opts.continueReply ? (reply.completionTokens ?? 0) : 0;
	const decodeBefore = opts.continueReply ? (reply.decodeMs ?? 0) : 0;
	reply.status = 'streaming';
	reply.error = undefined;
	reply.finishReason = undefined;
	try {
		const response = await authFetch('/v1/chat/completions', {
			method: 'POST',
			headers: { 'Content-Type': 'application/json' },
			body: JSON.stringify(requestBody(opts)),
			signal: opts.signal
		});
		if (!response.ok || !response.body) {
			reply.error = await errorText(response);
		} else {
			await readStream(response.body, (_event, data) => {
				if (data === '[DONE]') return;
				const chunk: StreamChunk = JSON.parse(data);
				if (chunk.usage) usage = chunk.usage;
				if (!applyChunk(reply, chunk)) return;
				lastToken = performance.now();
				if (!firstToken) {
					firstToken = lastToken;
					opts.onFirstToken?.();
				}
				deltas++;
				opts.onUpdate(reply);
			});
		}
	} catch (e) {
		if ((e as Error).name === 'AbortError') reply.status = 'stopped';
		else reply.error = (e as Error).message;
	}
	if (reply.error) reply.status = 'error';
	else if (reply.status === 'streaming') reply.status = 'complete';
	if (firstToken) {
		reply.ttftMs = firstToken - started;
		reply.decodeMs = decodeBefore + lastToken - firstToken;
	}
	const tokens = usage?.completion_tokens ?? deltas;
	if (tokens || opts.continueReply) reply.completionTokens = tokensBefore + tokens;
	if (usage?.prompt_tokens != null) reply.promptTokens = usage.prompt_tokens;
	opts.onUpdate(reply);
}
