// Problems (RFC 7807) in plain words: what went wrong and what to do, never a regex or an internal field name.
import { problemText } from './api/client';

interface FieldError {
	loc?: string[];
	msg?: string;
	type?: string;
}

interface Problem {
	code?: string;
	detail?: string;
	errors?: FieldError[];
}

/** A hub problem (search, download) said for someone who may be offline. */
export function hubProblemText(error: unknown, fallback = 'Hugging Face did not answer'): string {
	const p = (error ?? {}) as Problem;
	if (p.code === 'hub_offline')
		return 'This server works offline (HF_HUB_OFFLINE is set), so it cannot search or download. Models already on this machine keep working; restart it with HF_HUB_OFFLINE=0 to download.';
	if (p.code === 'hub_unreachable')
		return 'Hugging Face could not be reached: this machine may be offline. Models already on this machine keep working; to add one offline, copy its folder into a model directory (--model-dir) or the Hugging Face cache.';
	if (p.code === 'repo_not_found') return `${p.detail ?? 'No such model.'} Check the spelling: owner/name, as on huggingface.co.`;
	return problemText(error, fallback);
}

const phrases: [RegExp, (m: RegExpMatchArray) => string][] = [
	[/at least (\d+) characters?/, (m) => `must be at least ${m[1]} characters long`],
	[/at most (\d+) characters?/, (m) => `must be at most ${m[1]} characters long`],
	[/match pattern/, () => 'has characters that are not allowed'],
	[/greater than or equal to (\S+)/, (m) => `must be ${m[1]} or more`],
	[/less than or equal to (\S+)/, (m) => `must be ${m[1]} or less`],
	[/greater than (\S+)/, (m) => `must be more than ${m[1]}`],
	[/less than (\S+)/, (m) => `must be less than ${m[1]}`],
	[/[Ff]ield required|[Mm]issing/, () => 'is required'],
	[/valid integer/, () => 'must be a whole number'],
	[/valid number/, () => 'must be a number']
];

/** What a pattern allows, said for people, by the API's field name. */
const allowed: Record<string, string> = {
	username: 'may use only letters, digits and . _ @ - (starting with a letter or digit)',
	name: 'may use only letters, digits and . _ : @ - (no spaces)'
};

/** One field error as "Label must …", with the field's label from the form instead of its API name. */
export function fieldErrorText(e: FieldError, labels: Record<string, string> = {}): string {
	const field = [...(e.loc ?? [])].reverse().find((p) => p !== 'body' && !/^\d+$/.test(p)) ?? '';
	const label = labels[field] ?? (field ? field.replaceAll('_', ' ') : 'A value');
	const msg = e.msg ?? '';
	if (/match pattern/.test(msg) && allowed[field]) return `${capital(label)} ${allowed[field]}.`;
	for (const [re, say] of phrases) {
		const m = msg.match(re);
		if (m) return `${capital(label)} ${say(m)}.`;
	}
	return `${capital(label)}: ${msg.replace(/^Value error, /, '')}`;
}

const capital = (s: string) => `${s.charAt(0).toUpperCase()}${s.slice(1)}`;

/** Internal names in a sentence (a list of saved settings, a server detail) as the form's labels. */
export function labelled(text: string, labels: Record<string, string>): string {
	// Only snake_case names: "model" or "name" in a sentence is plain English already. One pass, longest name
	// first, so a label is never rewritten by a shorter name inside it.
	const names = Object.keys(labels)
		.filter((n) => n.includes('_'))
		.sort((a, b) => b.length - a.length);
	if (!names.length) return text;
	return text.replace(new RegExp(`\\b(${names.join('|')})\\b`, 'g'), (name) => labels[name]);
}

/** A problem for a form: its field errors named by the form's labels, else its detail. */
export function friendlyProblem(error: unknown, labels: Record<string, string> = {}, fallback = 'Request failed'): string {
	const p = (error ?? {}) as Problem;
	if (Array.isArray(p.errors) && p.errors.length) return p.errors.map((e) => fieldErrorText(e, labels)).join(' ');
	return labelled(problemText(error, fallback), labels);
}

/** A model API's error (OpenAI's shape, naming `param`) for the chat page: the field's label, not its API name. */
export function modelErrorText(body: unknown, labels: Record<string, string>, fallback: string): string {
	const e = ((body ?? {}) as { error?: { message?: string; param?: string | null }; detail?: string }).error;
	const message = e?.message;
	if (!message) return problemText(body, fallback);
	const param = e.param ?? '';
	if (labels[param] && phrases.some(([re]) => re.test(message)))
		return fieldErrorText({ loc: [param], msg: message.replace(/^Invalid value for '[^']*': /, '') }, labels);
	return labelled(message, labels);
}
