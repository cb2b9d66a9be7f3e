export function bytes(n: number | null | undefined): string {
	if (n == null) return '–';
	const units = ['B', 'KB', 'MB', 'GB', 'TB'];
	let i = 0;
	let v = n;
	while (v >= 1024 && i < units.length - 1) {
		v /= 1024;
		i++;
	}
	return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

export function when(seconds: number | null | undefined): string {
	return seconds == null ? '–' : new Date(seconds * 1000).toLocaleString();
}
