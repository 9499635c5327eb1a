// Building native log search conditions from clicked values, and the word being typed in
// the query bar (for autocomplete).

/** A field name the syntax takes as is: letters, digits and `_ . @ -`. */
export function isFieldName(k: string): boolean {
  return /^[A-Za-z0-9_.@][A-Za-z0-9_.@-]*$/.test(k);
}

/** A value as the syntax reads it: bare when it is one plain word, else quoted. */
export function quoteValue(v: string): string {
  if (/^[A-Za-z0-9_./@-]+$/.test(v) && !/[*?]/.test(v)) return v;
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** `field:value`, or `-field:value` to exclude it. */
export function condition(field: string, value: string, exclude = false): string {
  return `${exclude ? '-' : ''}${field}:${quoteValue(value)}`;
}

/** Adds a condition to a query (replacing its opposite if present). */
export function withCondition(query: string, cond: string): string {
  const opposite = cond.startsWith('-') ? cond.slice(1) : `-${cond}`;
  const parts = query.trim() ? query.trim().split(/\s+/) : [];
  const kept = parts.filter((p) => p !== opposite && p !== cond);
  return [...kept, cond].join(' ');
}

export interface Typing {
  /** Where the word being typed starts and ends. */
  start: number;
  end: number;
  /** `field` when the word is `field:prefix` (with `-` stripped), else null. */
  field: string | null;
  prefix: string;
  negated: boolean;
}

/** The word under the cursor. */
export function typingAt(text: string, cursor: number): Typing {
  let start = cursor;
  while (start > 0 && !/\s/.test(text[start - 1])) start--;
  let end = cursor;
  while (end < text.length && !/\s/.test(text[end])) end++;
  let word = text.slice(start, cursor);
  const negated = word.startsWith('-');
  if (negated) word = word.slice(1);
  const colon = word.indexOf(':');
  if (colon > 0) return { start, end, field: word.slice(0, colon), prefix: word.slice(colon + 1).replace(/^"/, ''), negated };
  return { start, end, field: null, prefix: word, negated };
}
