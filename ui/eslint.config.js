// ESLint (flat config): JavaScript and TypeScript recommended rules plus eslint-plugin-svelte's, for `npm run lint`.
import js from '@eslint/js';
import svelte from 'eslint-plugin-svelte';
import globals from 'globals';
import ts from 'typescript-eslint';
import svelteConfig from './svelte.config.js';

export default ts.config(
	{ ignores: ['.svelte-kit/', 'build/', 'node_modules/', 'src/lib/api/schema.d.ts'] },
	js.configs.recommended,
	...ts.configs.recommended,
	...svelte.configs.recommended,
	{ languageOptions: { globals: { ...globals.browser, ...globals.node } } },
	{
		files: ['**/*.svelte', '**/*.svelte.ts', '**/*.svelte.js'],
		languageOptions: { parserOptions: { projectService: true, extraFileExtensions: ['.svelte'], parser: ts.parser, svelteConfig } }
	},
	{
		rules: {
			// Model output is rendered only after DOMPurify (src/lib/markdown.ts); that one {@html} is reviewed.
			'svelte/no-at-html-tags': 'off',
			// The UI is a static SPA served at /; links need no base path.
			'svelte/no-navigation-without-resolve': 'off'
		}
	}
);
