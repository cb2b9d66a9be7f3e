// The typed client for the server's own API (generated types in schema.d.ts: `npm run gen:api`).
import createClient, { type Middleware } from 'openapi-fetch';
import type { paths, components } from './schema';
import { auth, signOut } from '../auth.svelte';

export type Schemas = components['schemas'];

/** Sends the session token to /api and signs out on a 401 (an expired or revoked session). */
export const bearer: Middleware = {
	onRequest({ request }) {
		if (auth.token) request.headers.set('Authorization', `Bearer ${auth.token}`);
		return request;
	},
	onResponse({ response, request }) {
		// An expired or revoked session: back to the login page (not for the login call itself).
		if (response.status === 401 && auth.token && !request.url.includes('/api/auth/login')) signOut();
		return response;
	}
};

export const api = createClient<paths>({ baseUrl: '' });
api.use(bearer);

/** The text of an RFC 7807 problem or an OpenAI-style error, for showing to the user. */
export function problemText(error: unknown, fallback = 'Request failed'): string {
	if (!error || typeof error !== 'object') return fallback;
	const e = error as Record<string, unknown>;
	if (typeof e.detail === 'string') return e.detail;
	if (typeof e.title === 'string') return e.title;
	const inner = e.error as Record<string, unknown> | undefined;
	if (inner && typeof inner.message === 'string') return inner.message;
	return fallback;
}

/** fetch with the session token, for routes outside /api (/v1, /admin, /metrics). */
export function authFetch(url: string, init: RequestInit = {}): Promise<Response> {
	const headers = new Headers(init.headers);
	if (auth.token) headers.set('Authorization', `Bearer ${auth.token}`);
	return fetch(url, { ...init, headers });
}
