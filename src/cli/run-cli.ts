/** A command-line mistake: the message is followed by the command's usage. */
export class UsageError extends Error {}

/**
 * Runs a command's `run` and exits with its code; anything it throws exits 2 ("could not run"),
 * with the usage after a command-line mistake (a {@link UsageError} or a `parseArgs` refusal).
 */
export function runCli(name: string, usage: string, run: () => Promise<number>): void {
  run().then(
    (code) => process.exit(code),
    (err: unknown) => {
      const misuse = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
      console.error(`${name} could not run: ${(err as Error).message}${misuse ? `\n\n${usage}` : ''}`);
      process.exit(2);
    },
  );
}
