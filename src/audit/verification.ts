import type { KeyObject } from 'node:crypto';
import { GENESIS_HASH } from './canonical.js';
import {
  createSignatureChecker,
  readCheckpointFileFrom,
  streamCheckpointTable,
  type Checkpoint,
  type CheckpointFilePosition,
} from './checkpoints.js';
import { checkHotContinuity, verifyArchiveRows } from './verify-archive.js';
import { CheckpointTrust, TimeSlicer, summarizeWalks, walkRange, type ChainProblem, type RecordSource, type Finding, type VerifyResult } from './verify-chain.js';

/** What `GET /admin/audit/verify` answers: the outcome of one run, over exactly the range it walked. */
export interface IntegrityReport {
  valid: boolean;
  /** Records whose hash was recomputed: `from_seq` … `from_seq + checked - 1`. */
  checked: number;
  head_seq: number;
  first_invalid_seq?: number;
  problem?: ChainProblem;
  detail?: string;
  /** Signed checkpoints of the walked range that the chain was held to. */
  checkpoints_checked: number;
  /**
   * The first record this run checked: the first record in the database for a full run (1, or the
   * record after the archived prefix, docs/archives.md), else the record after the checkpoint it
   * started from.
   */
  from_seq: number;
}

export interface VerificationServiceOptions {
  db: RecordSource;
  /** Keys trusted to sign checkpoints, by key id (never read from the database). */
  trustedKeys: ReadonlyMap<string, KeyObject>;
  /** The JSON-lines export; its checkpoints count as much as the table's. */
  checkpointFile?: string | undefined;
  /**
   * Rows (and checkpoints) per round trip. The driver parses a page that has arrived in one go, so
   * this bounds how long the event loop is held by it: 1,000 rows take a few milliseconds.
   */
  batchSize?: number | undefined;
  /** Called for each Ed25519 verification actually done (a metric). */
  onSignatureChecked?: () => void;
}

export interface VerificationService {
  /** Incremental (from the last verified checkpoint) unless `full`; runs with the same start share one walk. */
  verify(options: { full: boolean }): Promise<IntegrityReport>;
  stats(): { signaturesChecked: number; lastVerifiedSeq: number | undefined };
}

interface Start {
  seq: number;
  hash: Buffer;
  /** The start record's canonical time, when it is archived (from its manifest). */
  occurredAt?: Buffer | undefined;
}

/**
 * The gateway's integrity check and the state that makes it cheap to call often:
 *
 * - the last signed checkpoint a run found the chain to match, where the next incremental run
 *   starts (a problem found at or before it sends incremental runs back to the genesis, so they
 *   keep reporting it);
 * - the verdict of every checkpoint signature already checked (keyed by seq and content), so each
 *   checkpoint costs one Ed25519 verification per process, however often it is read;
 * - how far the export file was read, and its checkpoints after the last verified one, so an
 *   incremental run reads only the lines appended since;
 * - the run in flight for each start: a call joins a run only when it would start at the same seq.
 *
 * An incremental run reads only the checkpoints after its start (table rows by primary key, new
 * file lines) and walks only the records after it, so its cost follows what is new. Every long
 * loop (rows, checkpoints) yields to the event loop every few milliseconds.
 */
export function createVerificationService(options: VerificationServiceOptions): VerificationService {
  const { db } = options;
  const batchSize = options.batchSize ?? 1000;
  const signatures = createSignatureChecker(options.trustedKeys, options.onSignatureChecked ? { onVerify: options.onSignatureChecked } : {});
  const inFlight = new Map<number, Promise<IntegrityReport>>();
  let lastVerified: Start | undefined;
  /** Bumped when a problem is found at or before `lastVerified`: runs started earlier may no longer advance it. */
  let generation = 0;

  // The export file, read incrementally: `kept` holds every checkpoint read so far with seq > `keptAfter`.
  const file = { position: undefined as CheckpointFilePosition | undefined, kept: [] as Checkpoint[], keptAfter: 0, generation: 0 };
  let fileQueue: Promise<unknown> = Promise.resolve();

  /** Feeds `trust` the export file's checkpoints after `afterSeq`; reads only new lines when it can. */
  function addFileCheckpoints(fileName: string, afterSeq: number, trust: CheckpointTrust): Promise<void> {
    const task = fileQueue.then(async () => {
      const floor = Math.min(lastVerified?.seq ?? 0, afterSeq);
      if (file.position === undefined || afterSeq < file.keptAfter || file.generation !== generation) {
        // From the start (a full run, a reset, the first read): stream it, keep only what later incremental runs need.
        const kept: Checkpoint[] = [];
        const { position } = await readCheckpointFileFrom(fileName, undefined, async (page) => {
          await trust.add(page.filter((cp) => cp.seq > afterSeq));
          for (const cp of page) if (cp.seq > floor) kept.push(cp);
        });
        Object.assign(file, { position, kept, keptAfter: floor, generation });
        return;
      }
      if (floor > file.keptAfter) {
        file.kept = file.kept.filter((cp) => cp.seq > floor);
        file.keptAfter = floor;
      }
      const added: Checkpoint[] = [];
      const { position, restarted } = await readCheckpointFileFrom(fileName, file.position, (page) => {
        for (const cp of page) if (cp.seq > file.keptAfter) added.push(cp);
      });
      // A file replaced or cut short is read whole again: what it says now is what counts.
      file.kept = restarted ? added : file.kept.concat(added);
      file.position = position;
      await trust.add(file.kept.filter((cp) => cp.seq > afterSeq));
    });
    fileQueue = task.catch(() => {});
    return task;
  }

  /** After a run: keep only the file's checkpoints after the last verified one; none when there is none (the next run reads the file whole anyway). */
  function trimFile(): void {
    fileQueue = fileQueue.then(() => {
      if (!lastVerified) Object.assign(file, { position: undefined, kept: [], keptAfter: 0 });
      else if (lastVerified.seq > file.keptAfter) Object.assign(file, { kept: file.kept.filter((cp) => cp.seq > lastVerified!.seq), keptAfter: lastVerified.seq });
    });
  }

  /**
   * A run from the genesis starts after the archived prefix: the manifests recorded in
   * audit_archives must be signed by a trusted key and chain without gap, and the first record in
   * the database must continue the last one. The archived records themselves are the verifier's
   * (`npm run audit:verify -- --archive`).
   */
  async function archiveStart(): Promise<{ start: Start; findings: Finding[] }> {
    const { result, end } = await verifyArchiveRows(db, { trustedKeys: options.trustedKeys });
    const findings: Finding[] = [];
    if (result.first_invalid_seq !== undefined && result.problem !== undefined) {
      findings.push({ seq: result.first_invalid_seq, problem: result.problem, detail: result.detail ?? '' });
    }
    const hot = await checkHotContinuity(db, end);
    if (hot) findings.push(hot);
    return { start: { seq: end.seq, hash: end.hash, occurredAt: end.occurredAt }, findings };
  }

  /** The last archived record (0: none): an incremental run from before it starts after the archive instead. */
  async function archivedThrough(): Promise<number> {
    const { rows } = await db.query<{ seq: number | null }>('SELECT max(last_seq) AS seq FROM public.audit_archives');
    return rows[0]?.seq ?? 0;
  }

  async function run(requested: Start, runGeneration: number): Promise<IntegrityReport> {
    const fromArchive = requested.seq === 0 || requested.seq < (await archivedThrough());
    const archived = fromArchive ? await archiveStart() : { start: requested, findings: [] };
    const start = archived.start;
    const slicer = new TimeSlicer();
    const trust = new CheckpointTrust(signatures, slicer);
    trust.findings.push(...archived.findings);
    for await (const page of streamCheckpointTable(db, start.seq, batchSize)) await trust.add(page);
    if (options.checkpointFile) await addFileCheckpoints(options.checkpointFile, start.seq, trust);
    const outcome = await walkRange(db, { start, trusted: trust.trusted, batchSize, slicer });
    const result = await summarizeWalks(db, { findings: trust.findings, outcomes: [outcome], trusted: trust.trusted, walkedThrough: start.seq + outcome.checked });
    settle(result, runGeneration);
    trimFile();
    return {
      valid: result.valid,
      checked: result.checked,
      head_seq: result.head_seq,
      ...(result.first_invalid_seq !== undefined ? { first_invalid_seq: result.first_invalid_seq, problem: result.problem, detail: result.detail } : {}),
      checkpoints_checked: result.checkpoints_checked,
      from_seq: start.seq + 1,
    };
  }

  function settle(result: VerifyResult, runGeneration: number): void {
    if (!result.valid) {
      if (lastVerified && result.first_invalid_seq !== undefined && result.first_invalid_seq <= lastVerified.seq) {
        lastVerified = undefined;
        generation += 1;
      }
      return;
    }
    const reached = result.last_verified_checkpoint;
    if (runGeneration === generation && reached && reached.seq > (lastVerified?.seq ?? 0)) {
      lastVerified = { seq: reached.seq, hash: Buffer.from(reached.hash, 'hex') };
    }
  }

  return {
    verify({ full }) {
      const start: Start = full || !lastVerified ? { seq: 0, hash: GENESIS_HASH } : lastVerified;
      let running = inFlight.get(start.seq);
      if (!running) {
        running = run(start, generation).finally(() => inFlight.delete(start.seq));
        inFlight.set(start.seq, running);
      }
      return running;
    },
    stats: () => ({ signaturesChecked: signatures.verified, lastVerifiedSeq: lastVerified?.seq }),
  };
}
