// Markdown to sanitised HTML, with code highlighted.
import { Marked } from 'marked';
import DOMPurify from 'dompurify';
import hljs from 'highlight.js/lib/common';

const marked = new Marked({
	gfm: true,
	breaks: true,
	renderer: {
		code({ text, lang }) {
			const language = lang && hljs.getLanguage(lang) ? lang : undefined;
			const html = language ? hljs.highlight(text, { language }).value : hljs.highlightAuto(text).value;
			return `<pre><code class="hljs${language ? ` language-${language}` : ''}">${html}</code></pre>`;
		}
	}
});

// Beyond DOMPurify's defaults (no scripts, event handlers or javascript: URLs): model output may not restyle the page
// (the CSP allows inline styles for Svelte) or draw form controls that could pass for the UI's own.
const FORBID_TAGS = ['style', 'form', 'input', 'button', 'textarea', 'select', 'option'];
const FORBID_ATTR = ['style'];

export function renderMarkdown(text: string): string {
	return DOMPurify.sanitize(marked.parse(text, { async: false }) as string, { FORBID_TAGS, FORBID_ATTR });
}
