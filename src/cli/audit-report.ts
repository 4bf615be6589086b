import { auditReportCli } from '../report/cli.js';

/** `npm run audit:report`: the compliance report of a period, or `--verify` of one (src/report/cli.ts, docs/report.md). */
auditReportCli(process.argv.slice(2), { env: process.env, out: (line) => console.log(line), err: (line) => console.error(line) }).then(
  (code) => process.exit(code),
  () => process.exit(2),
);
