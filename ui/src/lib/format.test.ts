import { describe, expect, it } from 'vitest';
import { bytes, when } from './format';

describe('bytes', () => {
	it('picks a unit', () => {
		expect(bytes(0)).toBe('0 B');
		expect(bytes(1023)).toBe('1023 B');
		expect(bytes(1024)).toBe('1.0 KB');
		expect(bytes(1536)).toBe('1.5 KB');
		expect(bytes(300 * 1024 ** 2)).toBe('300 MB');
		expect(bytes(8 * 1024 ** 3)).toBe('8.0 GB');
		expect(bytes(5 * 1024 ** 5)).toBe('5120 TB');
	});
	it('shows a dash for nothing', () => {
		expect(bytes(null)).toBe('–');
		expect(bytes(undefined)).toBe('–');
	});
});

describe('when', () => {
	it('formats Unix seconds as local time', () => {
		expect(when(0)).toBe(new Date(0).toLocaleString());
		expect(when(1_700_000_000)).toBe(new Date(1_700_000_000_000).toLocaleString());
	});
	it('shows a dash for nothing', () => {
		expect(when(null)).toBe('–');
	});
});
