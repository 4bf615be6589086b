import { outsideDeadline } from '../deadline.js';

/**
 * Fail closed: an action already done is undone when its audit record cannot be written, and the
 * caller then answers 503 instead of success. The undo is best effort; the record's error wins.
 * It runs free of the request's deadline, which has often just passed when it is needed.
 */
export async function recordOrUndo(record: () => Promise<unknown>, undo: () => Promise<unknown>): Promise<void> {
  try {
    await record();
  } catch (err) {
    await outsideDeadline(undo).catch(() => {});
    throw err;
  }
}
