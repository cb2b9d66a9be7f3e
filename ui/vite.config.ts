import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vite';

export default defineConfig({
	plugins: [sveltekit()],
	build: { emptyOutDir: true },
	server: { proxy: { '/api': 'http://127.0.0.1:8080', '/v1': 'http://127.0.0.1:8080', '/admin': 'http://127.0.0.1:8080', '/metrics': 'http://127.0.0.1:8080', '/health': 'http://127.0.0.1:8080' } }
});
