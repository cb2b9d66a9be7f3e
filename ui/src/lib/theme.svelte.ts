// Light or dark: the system's choice unless the user picked one (kept in localStorage).
const KEY = 'mlx-manager-theme';
type Theme = 'light' | 'dark' | 'system';

export const theme = $state<{ value: Theme }>({ value: (localStorage.getItem(KEY) as Theme) ?? 'system' });

export function applyTheme(): void {
	const root = document.documentElement;
	if (theme.value === 'system') delete root.dataset.theme;
	else root.dataset.theme = theme.value;
}

export function cycleTheme(): void {
	theme.value = theme.value === 'system' ? 'dark' : theme.value === 'dark' ? 'light' : 'system';
	localStorage.setItem(KEY, theme.value);
	applyTheme();
}
