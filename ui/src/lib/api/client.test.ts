import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { api, authFetch, problemText } from './client';
import { auth, signIn, signOut } from '../auth.svelte';

const user = { id: 1, username: 'admin', is_admin: true, is_approved: true, created_at: 0, last_login_at: null };

function json(status: number, body: unknown): Response {
	return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

let calls: Request[] = [];
const fake = (input: Request) => fetch(input);
const at = { baseUrl: 'http://ui.test', fetch: fake };

beforeEach(() => {
	calls = [];
	localStorage.clear();
	signOut();
	vi.stubGlobal(
		'fetch',
		vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
			const request = input instanceof Request ? input : new Request(new URL(String(input), 'http://ui.test'), init);
			calls.push(request);
			return request.url.endsWith('/api/auth/me') && !request.headers.get('Authorization')
				? json(401, { title: 'Unauthorized', status: 401 })
				: json(200, user);
		})
	);
});

afterEach(() => vi.unstubAllGlobals());

function headerOf(r: Request): string | null {
	return r.headers.get('Authorization');
}

describe('the session token', () => {
	it('goes as Bearer to /api once signed in, and is kept in localStorage', async () => {
		signIn('tok-1', Date.now() / 1000 + 3600, user as never);
		expect(JSON.parse(localStorage.getItem('mlx-manager-session') ?? '{}').token).toBe('tok-1');
		await api.GET('/api/auth/me', at);
		expect(headerOf(calls[0])).toBe('Bearer tok-1');
	});

	it('is not sent when signed out', async () => {
		await api.GET('/api/auth/status', at);
		expect(headerOf(calls[0])).toBeNull();
	});

	it('goes to routes outside /api through authFetch, keeping other headers', async () => {
		signIn('tok-2', Date.now() / 1000 + 3600, user as never);
		await authFetch('http://ui.test/v1/models', { headers: { Accept: 'text/event-stream' } });
		const [input, init] = vi.mocked(fetch).mock.calls[0];
		const headers = new Headers(init?.headers);
		expect(String(input)).toBe('http://ui.test/v1/models');
		expect(headers.get('Authorization')).toBe('Bearer tok-2');
		expect(headers.get('Accept')).toBe('text/event-stream');
	});

	it('is dropped on a 401 from /api (an expired or revoked session)', async () => {
		signIn('stale', Date.now() / 1000 + 3600, user as never);
		vi.mocked(fetch).mockResolvedValueOnce(json(401, { title: 'Unauthorized', status: 401 }));
		await api.GET('/api/auth/me', at);
		expect(auth.token).toBeNull();
		expect(localStorage.getItem('mlx-manager-session')).toBeNull();
	});

	it('is kept on a 401 from the login call itself (a wrong password)', async () => {
		signIn('good', Date.now() / 1000 + 3600, user as never);
		vi.mocked(fetch).mockResolvedValueOnce(json(401, { title: 'Unauthorized', status: 401 }));
		await api.POST('/api/auth/login', { ...at, body: { username: 'x', password: 'y' } });
		expect(auth.token).toBe('good');
	});
});

describe('problemText', () => {
	it('reads RFC 7807 problems and OpenAI errors', () => {
		expect(problemText({ title: 'Conflict', detail: 'name taken' })).toBe('name taken');
		expect(problemText({ title: 'Forbidden' })).toBe('Forbidden');
		expect(problemText({ error: { message: 'bad model' } })).toBe('bad model');
		expect(problemText(null, 'nope')).toBe('nope');
		expect(problemText('text')).toBe('Request failed');
	});
});
