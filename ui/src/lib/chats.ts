// The chats kept on the server (/api/chats), and saving a reply there while it streams.
import { api, authFetch, type Schemas } from './api/client';
import { chatLabels, type ChatMessage, type ChatOptions } from './chat';
import { friendlyProblem } from './problems';

export type ChatSummary = Schemas['ChatSummary'];
export type ChatInfo = Schemas['ChatPublic'];
export type ChatDetail = Schemas['ChatDetail'];
type ServerMessage = Schemas['MessagePublic'];
type MessageFields = Schemas['MessageUpdate'];

// How often a streaming reply is saved: a reload loses at most this much of it.
const SAVE_EVERY_MS = 1000;

function fail(error: unknown, what: string): never {
	throw new Error(`${what}: ${friendlyProblem(error, chatLabels)}`);
}

/** A stored message as the chat page holds it (nulls become absent). */
export function fromServer(m: ServerMessage): ChatMessage {
	return {
		key: `saved-${m.id}`,
		id: m.id,
		role: m.role,
		content: m.content,
		images: m.images.length ? m.images : undefined,
		reasoning: m.reasoning ?? undefined,
		toolCalls: m.tool_calls?.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments ?? '' })),
		status: m.status,
		error: m.error ?? undefined,
		model: m.model ?? undefined,
		params: m.params,
		finishReason: m.finish_reason ?? undefined,
		promptTokens: m.prompt_tokens ?? undefined,
		completionTokens: m.completion_tokens ?? undefined,
		ttftMs: m.ttft_ms ?? undefined,
		decodeMs: m.decode_ms ?? undefined
	};
}

/** What is saved of a message. */
export function toFields(m: ChatMessage): MessageFields {
	return {
		content: m.content,
		images: m.images ?? [],
		reasoning: m.reasoning ?? null,
		tool_calls: m.toolCalls?.map((c) => ({ id: c.id ?? null, name: c.name, arguments: c.arguments })) ?? null,
		status: m.status ?? 'complete',
		error: m.error ?? null,
		model: m.model ?? null,
		params: m.params ?? {},
		finish_reason: m.finishReason ?? null,
		prompt_tokens: m.promptTokens ?? null,
		completion_tokens: m.completionTokens ?? null,
		ttft_ms: m.ttftMs ?? null,
		decode_ms: m.decodeMs ?? null
	};
}

/** The options worth saving: those set. */
export function setOptions(o: ChatOptions): ChatOptions {
	return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined && v !== '')) as ChatOptions;
}

export async function listChats(q: string): Promise<ChatSummary[]> {
	const { data, error } = await api.GET('/api/chats', { params: { query: { q: q.trim() || undefined, limit: 200 } } });
	if (error) fail(error, 'Could not list chats');
	return data.items;
}

export async function loadChat(id: number): Promise<ChatDetail> {
	const { data, error } = await api.GET('/api/chats/{chat_id}', { params: { path: { chat_id: id } } });
	if (error) fail(error, 'Could not open the chat');
	return data;
}

export async function createChat(title: string, model: string, options: ChatOptions): Promise<ChatInfo> {
	const { data, error } = await api.POST('/api/chats', { body: { title, model, options: setOptions(options) } });
	if (error) fail(error, 'Could not save the chat');
	return data;
}

export async function updateChat(
	id: number,
	body: { title?: string; model?: string; options?: ChatOptions }
): Promise<ChatInfo> {
	const { data, error } = await api.PATCH('/api/chats/{chat_id}', { params: { path: { chat_id: id } }, body });
	if (error) fail(error, 'Could not save the chat');
	return data;
}

export async function deleteChat(id: number): Promise<void> {
	const { error } = await api.DELETE('/api/chats/{chat_id}', { params: { path: { chat_id: id } } });
	if (error) fail(error, 'Could not delete the chat');
}

export async function addMessage(chatId: number, m: ChatMessage): Promise<number> {
	const role = m.role === 'system' ? 'user' : m.role;
	const { data, error } = await api.POST('/api/chats/{chat_id}/messages', {
		params: { path: { chat_id: chatId } },
		body: { ...toFields(m), role, status: m.status ?? 'complete', params: m.params ?? {} }
	});
	if (error) fail(error, 'Could not save the message');
	return data.id;
}

export async function saveMessage(chatId: number, id: number, fields: MessageFields): Promise<void> {
	const { error } = await api.PATCH('/api/chats/{chat_id}/messages/{message_id}', {
		params: { path: { chat_id: chatId, message_id: id } },
		body: fields
	});
	if (error) fail(error, 'Could not save the message');
}

export async function deleteMessage(chatId: number, id: number, andLater = false): Promise<void> {
	const { error } = await api.DELETE('/api/chats/{chat_id}/messages/{message_id}', {
		params: { path: { chat_id: chatId, message_id: id }, query: { and_later: andLater } }
	});
	if (error) fail(error, 'Could not remove the message');
}

/** The chat as a file to save: Markdown or JSON, named by the server. */
export async function exportChat(id: number, format: 'markdown' | 'json'): Promise<{ blob: Blob; name: string }> {
	const response = await authFetch(`/api/chats/${id}/export?format=${format}`);
	if (!response.ok) fail(await response.json().catch(() => null), 'Could not export the chat');
	const name = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') ?? '')?.[1];
	return { blob: await response.blob(), name: name ?? `chat.${format === 'json' ? 'json' : 'md'}` };
}

/** Saves a streaming reply at most once a second, the last state when it ends, and what it has when the page
 * goes away (a keepalive request, which outlives the page). */
export class ReplySaver {
	private timer: ReturnType<typeof setTimeout> | null = null;
	private saving: Promise<void> = Promise.resolve();
	private left = false;
	error = '';

	constructor(
		private chatId: number,
		private id: number,
		private read: () => ChatMessage
	) {}

	soon(): void {
		this.timer ??= setTimeout(() => {
			this.timer = null;
			this.save();
		}, SAVE_EVERY_MS);
	}

	private save(): Promise<void> {
		if (this.left) return this.saving; // the page went: what leave() saved stands
		const fields = toFields(this.read());
		this.saving = this.saving
			.then(() => saveMessage(this.chatId, this.id, fields))
			.then(() => void (this.error = ''))
			.catch((e: Error) => void (this.error = e.message));
		return this.saving;
	}

	/** The final state, after any save under way. */
	async finish(): Promise<void> {
		if (this.timer) clearTimeout(this.timer);
		this.timer = null;
		await this.save();
	}

	/** The page is going away mid-stream: save what there is as interrupted. */
	leave(): void {
		this.left = true;
		const body = JSON.stringify({ ...toFields(this.read()), status: 'interrupted' });
		authFetch(`/api/chats/${this.chatId}/messages/${this.id}`, {
			method: 'PATCH',
			headers: { 'Content-Type': 'application/json' },
			body,
			keepalive: body.length < 60_000 // browsers refuse larger keepalive bodies; the last timed save stands
		}).catch(() => undefined);
	}
}
