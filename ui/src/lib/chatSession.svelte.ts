// The open chat, kept outside the page: a reply streams on while the user visits another page, and is there on return.
// Every message is saved on the server as it is made (a reply as it streams), so a reload loses nothing.
import { authFetch } from './api/client';
import { newKey, streamChat, type ChatMessage, type ChatOptions } from './chat';
import { history, titleFrom, wire } from './chatHistory';
import {
	addMessage,
	createChat,
	deleteMessage,
	fromServer,
	loadChat,
	ReplySaver,
	saveMessage,
	setOptions,
	updateChat,
	type ChatInfo
} from './chats';

export interface ModelCard {
	id: string;
	owned_by: string;
	vision?: boolean;
	task?: string; // generate, embed, score, transcribe (speech to text) or speak (text to speech)
	loaded?: boolean;
	context_length?: number | null;
	sampling_defaults?: Record<string, { value: number; source: string }>;
}

export interface Live {
	index: number;
	// loading: the model is not in memory yet; waiting: for the first token; streaming: tokens arrive.
	phase: 'loading' | 'waiting' | 'streaming';
	since: number;
}

class ChatSession {
	owner = $state<string | null>(null);
	chat = $state<ChatInfo | null>(null);
	messages = $state<ChatMessage[]>([]);
	models = $state<ModelCard[]>([]);
	model = $state('');
	options = $state<ChatOptions>({});
	live = $state<Live | null>(null);
	error = $state('');
	listVersion = $state(0); // bumped when the chat list should be read again
	private controller: AbortController | null = null;
	private ended: Promise<void> = Promise.resolve();
	private savedSettings = '';

	/** Another user signed in: nothing of the previous one's stays. */
	async useOwner(owner: string | null): Promise<void> {
		if (owner === this.owner) return;
		await this.stopAndWait();
		this.owner = owner;
		this.clear();
		this.models = [];
	}

	private clear(): void {
		this.chat = null;
		this.messages = [];
		this.options = {};
		this.error = '';
		this.savedSettings = '';
	}

	async loadModels(): Promise<void> {
		const r = await authFetch('/v1/models');
		if (!r.ok) throw new Error(`Could not list models (${r.status})`);
		this.models = (await r.json()).data;
	}

	card(name: string): ModelCard | undefined {
		return this.models.find((m) => m.id === name);
	}

	/** The first model that does this task (transcribe: the microphone; speak: a reply's Play), if any. */
	audioModel(task: 'transcribe' | 'speak'): string | undefined {
		return this.models.find((m) => m.task === task)?.id;
	}

	/** Whether the model takes images; a name no model has (a routing rule's) may: its backend decides. */
	takesImages(name: string): boolean {
		const card = this.card(name);
		return card ? !!card.vision : !!name;
	}

	async open(id: number): Promise<void> {
		await this.stopAndWait();
		try {
			const detail = await loadChat(id);
			const { messages, ...chat } = detail;
			this.chat = chat;
			this.messages = messages.map(fromServer);
			if (chat.model) this.model = chat.model;
			this.options = { ...chat.options };
			this.error = '';
			this.savedSettings = this.settingsKey();
		} catch (e) {
			this.clear();
			throw e;
		}
	}

	async newChat(model?: string): Promise<void> {
		await this.stopAndWait();
		// Options chosen before anything was sent stay: the page may still be starting (a link with ?model=).
		if (this.chat || this.messages.length) this.clear();
		if (model) this.model = model;
	}

	private settingsKey(): string {
		return JSON.stringify([this.model, setOptions(this.options)]);
	}

	/** The open chat's model and options as now chosen (called as they change). */
	async saveSettings(): Promise<void> {
		const key = this.settingsKey();
		if (!this.chat || key === this.savedSettings) return;
		this.savedSettings = key;
		await this.guard(async () => {
			this.chat = await updateChat(this.chat!.id, { model: this.model, options: setOptions(this.options) });
		});
	}

	async rename(title: string): Promise<void> {
		if (this.chat) this.chat = await updateChat(this.chat.id, { title });
	}

	private async guard(work: () => Promise<void>): Promise<void> {
		try {
			await work();
		} catch (e) {
			this.error = (e as Error).message;
		}
	}

	private async chatId(text: string, images: number): Promise<number> {
		if (!this.chat) {
			this.chat = await createChat(titleFrom(text, images), this.model, this.options);
			this.savedSettings = this.settingsKey();
			this.listVersion++;
		}
		return this.chat.id;
	}

	async send(text: string, images: string[]): Promise<void> {
		if (this.live || !this.model) return;
		await this.guard(async () => {
			const chatId = await this.chatId(text, images.length);
			const user: ChatMessage = { key: newKey(), role: 'user', content: text, images: images.length ? images : undefined };
			this.messages.push(user);
			const saved = this.messages[this.messages.length - 1];
			saved.id = await addMessage(chatId, user);
			await this.reply(chatId);
		});
	}

	/** A new reply to the conversation up to `index` (an assistant message): it and what follows are replaced. */
	async regenerate(index: number): Promise<void> {
		const chat = this.chat;
		const old = this.messages[index];
		if (this.live || !chat || !old) return;
		await this.guard(async () => {
			if (old.id) await deleteMessage(chat.id, old.id, true);
			this.messages.splice(index);
			await this.reply(chat.id);
		});
	}

	/** Send a user message again as edited: the replies after it are replaced by a new one. */
	async edit(index: number, text: string, images: string[]): Promise<void> {
		const chat = this.chat;
		const message = this.messages[index];
		if (this.live || !chat || !message?.id) return;
		await this.guard(async () => {
			message.content = text;
			message.images = images.length ? images : undefined;
			await saveMessage(chat.id, message.id!, { content: text, images });
			const next = this.messages[index + 1];
			if (next?.id) await deleteMessage(chat.id, next.id, true);
			this.messages.splice(index + 1);
			await this.reply(chat.id);
		});
	}

	/** Remove a message whose send failed, with the reply that came to nothing. */
	async remove(index: number): Promise<void> {
		const chat = this.chat;
		if (this.live || !chat) return;
		await this.guard(async () => {
			const count = this.messages[index + 1]?.role === 'assistant' ? 2 : 1;
			for (const m of this.messages.slice(index, index + count)) if (m.id) await deleteMessage(chat.id, m.id);
			this.messages.splice(index, count);
		});
	}

	/** Go on with an interrupted, stopped or cut reply: the model continues its text. */
	async continueReply(index: number): Promise<void> {
		const chat = this.chat;
		if (this.live || !chat || this.messages[index]?.role !== 'assistant') return;
		await this.guard(() => this.reply(chat.id, index));
	}

	stop(): void {
		this.controller?.abort(); // closing the stream makes the server cancel the generation
	}

	private async stopAndWait(): Promise<void> {
		this.stop();
		await this.ended;
	}

	private async reply(chatId: number, continuing?: number): Promise<void> {
		const index = continuing ?? this.messages.length;
		if (continuing === undefined) {
			const params = setOptions(this.options);
			this.messages.push({ key: newKey(), role: 'assistant', content: '', status: 'streaming', model: this.model, params });
		}
		const reply = this.messages[index];
		const card = this.card(this.model);
		this.live = { index, phase: card && !card.loaded ? 'loading' : 'waiting', since: performance.now() };
		let done!: () => void;
		this.ended = new Promise((resolve) => (done = resolve));
		const controller = new AbortController(); // Stop works from here on
		this.controller = controller;
		try {
			if (continuing === undefined) reply.id = await addMessage(chatId, reply);
		} catch (e) {
			this.messages.pop();
			this.live = null;
			this.controller = null;
			done();
			throw e;
		}
		const messages = history(this.messages.slice(0, index), this.options.system_prompt);
		if (continuing !== undefined) messages.push(wire({ role: 'assistant', content: reply.content }));
		const saver = new ReplySaver(chatId, reply.id!, () => $state.snapshot(reply) as ChatMessage);
		const leave = () => saver.leave();
		window.addEventListener('pagehide', leave);
		try {
			await streamChat(
				{
					model: this.model,
					messages,
					options: $state.snapshot(this.options) as ChatOptions,
					continueReply: continuing !== undefined,
					signal: controller.signal,
					onFirstToken: () => {
						if (this.live) this.live.phase = 'streaming';
					},
					onUpdate: () => saver.soon()
				},
				reply
			);
			await saver.finish();
			if (saver.error) this.error = saver.error;
		} finally {
			window.removeEventListener('pagehide', leave);
			this.controller = null;
			this.live = null;
			this.listVersion++;
			done();
		}
		if (card) card.loaded = true;
	}
}

export const session = new ChatSession();
