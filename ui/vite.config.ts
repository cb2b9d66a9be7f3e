import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vitest/config';

export default defineConfig({
	plugins: [sveltekit()],
	build: { emptyOutDir: true },
	server: { proxy: { '/api': 'http://127.0.0.1:8080', '/v1': 'http://127.0.0.1:8080', '/admin': 'http://127.0.0.1:8080', '/metrics': 'http://127.0.0.1:8080', '/health': 'http://127.0.0.1:8080' } },
	// `npm run test:unit`: the pure logic (markdown sanitising, SSE parsing, formatting, auth headers) in jsdom.
	test: { environment: 'jsdom', include: ['src/**/*.test.ts'] }
});
