/**
 * A one-line progress bar on stderr (rows, rows/s, percent of bytes read):
 * redrawn in place on a terminal, printed at most every few seconds when
 * stderr is a pipe or a file so CI logs stay readable.
 */
export interface ProgressBar {
  update(p: { rows: number; bytes: number; totalBytes: number; elapsedMs: number }): void;
  done(): void;
}

export function createProgressBar(
  stream: NodeJS.WriteStream = process.stderr,
  label = "import",
): ProgressBar {
  const tty = stream.isTTY === true;
  let lastPrint = 0;
  let printed = false;
  const width = 30;
  return {
    update({ rows, bytes, totalBytes, elapsedMs }) {
      const now = Date.now();
      if (!tty && now - lastPrint < 2000 && bytes < totalBytes) return;
      lastPrint = now;
      const fraction = totalBytes > 0 ? Math.min(1, bytes / totalBytes) : 1;
      const filled = Math.round(fraction * width);
      const rate = elapsedMs > 0 ? Math.round((rows * 1000) / elapsedMs) : 0;
      const line = `${label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%  ${rows.toLocaleString("en")} rows  ${rate.toLocaleString("en")} rows/s`;
      stream.write(tty ? `\r${line}\u001b[K` : `${line}\n`);
      printed = true;
    },
    done() {
      if (tty && printed) stream.write("\n");
    },
  };
}
