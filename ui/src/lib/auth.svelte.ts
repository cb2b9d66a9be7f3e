// The signed-in session: the JWT from /api/auth/login, kept in localStorage.
import type { components } from './api/schema';

type User = components['schemas']['UserPublic'];
const KEY = 'mlx-manager-session';

function load(): { token: string | null; user: User | null } {
	try {
		const saved = JSON.parse(localStorage.getItem(KEY) ?? 'null');
		if (saved && saved.expires_at * 1000 > Date.now()) return { token: saved.token, user: saved.user };
	} catch {
		/* no saved session */
	}
	return { token: null, user: null };
}

export const auth = $state(load());

export function signIn(token: string, expiresAt: number, user: User): void {
	auth.token = token;
	auth.user = user;
	localStorage.setItem(KEY, JSON.stringify({ token, expires_at: expiresAt, user }));
}

export function signOut(): void {
	auth.token = null;
	auth.user = null;
	localStorage.removeItem(KEY);
}

/** The signed-in user changed (an admin demoted themselves): the navigation and pages follow at once. */
export function setUser(user: User): void {
	auth.user = user;
	try {
		const saved = JSON.parse(localStorage.getItem(KEY) ?? 'null');
		if (saved) localStorage.setItem(KEY, JSON.stringify({ ...saved, user }));
	} catch {
		/* nothing saved to update */
	}
}
