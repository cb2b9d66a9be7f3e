import { describe, expect, it } from 'vitest';
import { isSendKey } from './composer';

const key = (over: Partial<KeyboardEvent>) => ({ key: 'Enter', shiftKey: false, isComposing: false, keyCode: 13, ...over });

describe('isSendKey', () => {
	it('sends on Enter, not on Shift+Enter or other keys', () => {
		expect(isSendKey(key({}))).toBe(true);
		expect(isSendKey(key({ shiftKey: true }))).toBe(false);
		expect(isSendKey(key({ key: 'a', keyCode: 65 }))).toBe(false);
	});

	it('never sends the Enter that ends an IME composition', () => {
		expect(isSendKey(key({ isComposing: true }))).toBe(false);
		expect(isSendKey(key({ keyCode: 229 }))).toBe(false); // Safari: composition already over, key still the IME's
	});
});
