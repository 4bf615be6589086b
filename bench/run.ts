// `npm run bench`: every figure is printed next to a bound measured in the same run on the same machine.
import { benchArchive } from './archive.js';
import { benchAudit } from './audit.js';
import { benchConsole } from './console.js';
import { benchForward } from './forward.js';
import { benchLogin } from './login.js';
import { benchSecurity } from './security.js';

console.log(`authtrail benchmarks — node ${process.version}, ${new Date().toISOString()}`);
await benchAudit();
await benchForward();
await benchArchive();
await benchLogin();
await benchSecurity();
await benchConsole();
