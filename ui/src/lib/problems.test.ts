import { describe, expect, it } from 'vitest';
import { fieldErrorText, friendlyProblem, hubProblemText } from './problems';

describe('problems in plain words', () => {
	it('says an unreachable hub may mean offline, and what still works', () => {
		const text = hubProblemText({ code: 'hub_unreachable', detail: 'https://huggingface.co: ConnectError: [Errno -3]' });
		expect(text).toContain('offline');
		expect(text).not.toContain('Errno');
	});

	it('names a field by its label, never its pattern or API name', () => {
		const e = { loc: ['body', 'password'], msg: 'String should have at least 8 characters' };
		expect(fieldErrorText(e, { password: 'Password' })).toBe('Password must be at least 8 characters long.');
		const p = { loc: ['body', 'name'], msg: "String should match pattern '^[A-Za-z0-9._-]+$'" };
		expect(fieldErrorText(p, { name: 'Name' })).toBe('Name has characters that are not allowed.');
	});

	it('replaces internal names in a detail with labels', () => {
		const text = friendlyProblem({ detail: 'saved here: idle_ttl_seconds' }, { idle_ttl_seconds: 'Idle unload after (s)' });
		expect(text).toBe('saved here: Idle unload after (s)');
	});
});
