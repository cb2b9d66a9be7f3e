import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

/** @type {import('@sveltejs/kit').Config} */
const config = {
	preprocess: vitePreprocess(),
	kit: {
		// Built into the Python package, which serves it at / with index.html for client routes.
		adapter: adapter({ pages: '../src/mlx_manager/web', assets: '../src/mlx_manager/web', fallback: 'index.html', strict: false }),
		output: { bundleStrategy: 'split' }
	}
};

export default config;
