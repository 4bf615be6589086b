import { createCheckpointer, loadSigningKey, type Checkpoint } from '../../src/audit/checkpoints.js';
import { createLogger } from '../../src/logger.js';
import type { TestGateway } from './test-gateway.js';

/** Signs a checkpoint of the test gateway's log now, as its checkpointer would (the test gateway runs none). */
export async function checkpointNow(gw: TestGateway): Promise<Checkpoint | undefined> {
  await gw.services.writer.flush();
  const checkpointer = createCheckpointer({
    db: gw.t.db,
    writer: gw.services.writer,
    key: loadSigningKey(gw.setup.env.AUDIT_SIGNING_KEY_FILE!, { generate: false }),
    file: gw.setup.env.AUDIT_CHECKPOINT_FILE!,
    everyRecords: Number.MAX_SAFE_INTEGER,
    everySeconds: 86_400,
    logger: createLogger('silent'),
    origin: gw.services.config.audit.logOrigin,
  });
  try {
    return await checkpointer.checkpointNow();
  } finally {
    await checkpointer.close();
  }
}
