import { describe, expect, it } from 'vitest';
import { renderMarkdown } from './markdown';

function dom(html: string): HTMLElement {
	const div = document.createElement('div');
	div.innerHTML = html;
	return div;
}

describe('renderMarkdown', () => {
	it('renders markdown', () => {
		const html = renderMarkdown('# Title\n\n**bold** and `code`\n\n- a\n- b');
		expect(html).toContain('<h1>Title</h1>');
		expect(html).toContain('<strong>bold</strong>');
		expect(html).toContain('<code>code</code>');
		expect(dom(html).querySelectorAll('li')).toHaveLength(2);
	});

	it('highlights fenced code', () => {
		const html = renderMarkdown('```python\ndef f():\n    return 1\n```');
		expect(html).toContain('class="hljs language-python"');
		expect(html).toContain('hljs-keyword');
	});

	it('drops scripts from model output', () => {
		const html = renderMarkdown('hello <script>alert(1)</script> world');
		expect(html).not.toContain('<script');
		expect(html).not.toContain('alert(1)');
		expect(dom(html).querySelector('script')).toBeNull();
	});

	it('drops event handler attributes', () => {
		const html = renderMarkdown('<img src="x" onerror="alert(1)"> <a href="#" onclick="alert(2)">x</a>');
		const root = dom(html);
		expect(html).not.toMatch(/onerror|onclick/i);
		for (const el of root.querySelectorAll('*')) {
			for (const attr of el.attributes) expect(attr.name.startsWith('on')).toBe(false);
		}
	});

	it('drops javascript: links, markdown or html', () => {
		const html = renderMarkdown('[click](javascript:alert(1)) <a href="javascript:alert(2)">y</a>');
		expect(html).not.toMatch(/javascript:/i);
	});

	it('drops iframes, styles and svg script payloads', () => {
		const html = renderMarkdown('<iframe src="https://example.com"></iframe><svg><script>alert(1)</script></svg><style>*{}</style>');
		const root = dom(html);
		expect(root.querySelector('iframe, script, style')).toBeNull();
	});

	it('drops inline styles and form controls that could pass for the UI', () => {
		const html = renderMarkdown('<p style="position:fixed;inset:0">x</p><form action="/api/keys"><input name="k"><button>Go</button></form>');
		const root = dom(html);
		expect(root.querySelector('[style], form, input, button')).toBeNull();
		expect(root.textContent).toContain('x');
	});

	it('keeps task-list checkboxes out but the text in', () => {
		const html = renderMarkdown('- [x] done\n- [ ] todo');
		expect(dom(html).textContent).toContain('done');
		expect(dom(html).textContent).toContain('todo');
	});

	it('escapes html inside code blocks', () => {
		const html = renderMarkdown('```\n<script>alert(1)</script>\n```');
		expect(dom(html).querySelector('script')).toBeNull();
		expect(dom(html).textContent).toContain('<script>alert(1)</script>');
	});
});
