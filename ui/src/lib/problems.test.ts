import { describe, expect, it } from 'vitest';
import { fieldErrorText, friendlyProblem, hubProblemText, labelled, modelErrorText } from './problems';

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
		expect(fieldErrorText(p, { name: 'Name' })).toBe('Name may use only letters, digits and . _ : @ - (no spaces).');
		const u = { loc: ['body', 'username'], msg: "String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.@-]*$'" };
		expect(fieldErrorText(u, { username: 'New user' })).not.toContain('^');
		const other = { loc: ['body', 'pattern'], msg: "String should match pattern '^x$'" };
		expect(fieldErrorText(other, { pattern: 'Pattern' })).toBe('Pattern has characters that are not allowed.');
	});

	it('replaces internal names in a detail with labels', () => {
		const text = friendlyProblem({ detail: 'saved here: idle_ttl_seconds' }, { idle_ttl_seconds: 'Idle unload after (s)' });
		expect(text).toBe('saved here: Idle unload after (s)');
		const both = labelled('max_tokens (64) must be less than context_length (64)', {
			max_tokens: 'Max tokens',
			context_length: 'Context length',
			tokens: 'nope',
			model: 'Model'
		});
		expect(both).toBe('Max tokens (64) must be less than Context length (64)');
		expect(labelled('no model named x', { model: 'Model' })).toBe('no model named x');
	});

	it("says a model API's refusal with the chat's labels", () => {
		const body = { error: { message: "Invalid value for 'max_tokens': Input should be greater than or equal to 1", param: 'max_tokens' } };
		expect(modelErrorText(body, { max_tokens: 'Max tokens' }, 'failed')).toBe('Max tokens must be 1 or more.');
		const other = { error: { message: 'top_p is not honoured by this backend', param: null } };
		expect(modelErrorText(other, { top_p: 'Top P' }, 'failed')).toBe('Top P is not honoured by this backend');
		expect(modelErrorText({}, {}, 'failed')).toBe('failed');
	});
});
