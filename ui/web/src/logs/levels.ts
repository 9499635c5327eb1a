// Severity levels of log lines: the names the histogram uses (OpenTelemetry's ranges of four
// severity numbers) and their colours.
export const LEVELS = ['unknown', 'trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type Level = (typeof LEVELS)[number];

export const LEVEL_COLORS: Record<Level, string> = {
  unknown: '#94a3b8',
  trace: '#a5b4fc',
  debug: '#60a5fa',
  info: '#22c55e',
  warn: '#f59e0b',
  error: '#dc2626',
  fatal: '#7f1d1d',
};

export function levelOf(severityNumber: number): Level {
  if (severityNumber >= 1 && severityNumber <= 24) return LEVELS[Math.floor((severityNumber - 1) / 4) + 1];
  return 'unknown';
}

/** The text shown for a line's level: its severity text when it has one. */
export function levelLabel(severityNumber: number, severityText: string): string {
  return severityText || levelOf(severityNumber);
}
