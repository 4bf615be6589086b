import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it, mock, type Mock } from 'node:test';
import { StoredRecordDecoder, storedChainHash, storedLeafHash, type StoredRecord } from '../../src/audit/stored-records.js';

/** The columns the decoder reads per row: prev_hash, the 17 canonical fields, hash, account, network, stray time. */
const FIELD_COUNT = 22;
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const int16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};

/** One row of binary COPY output, written from the format's definition (field count, then length and bytes per field). */
function row(fields: (Buffer | null)[]): Buffer {
  assert.equal(fields.length, FIELD_COUNT);
  return Buffer.concat([int16(fields.length), ...fields.flatMap((f) => (f === null ? [int32(-1)] : [int32(f.length), f]))]);
}

/** Header (signature, flags, empty extension), rows, end marker. */
const copyOutput = (rows: Buffer[]): Buffer => Buffer.concat([SIGNATURE, int32(0), int32(0), ...rows, int16(-1)]);

/** A row whose `details` (field 17) has `detailsBytes` bytes; every other field small. */
function rowWithDetails(seq: number, detailsBytes: number): { bytes: Buffer; chained: Buffer } {
  const prevHash = crypto.randomBytes(32);
  const details = Buffer.alloc(detailsBytes, 0x61);
  const canonical: (Buffer | null)[] = [
    Buffer.from('authtrail-audit-v1'), Buffer.from(String(seq)), Buffer.from(crypto.randomUUID()), Buffer.from('2026-01-01T00:00:00.000000Z'),
    Buffer.from('login.failed'), Buffer.from('failure'), null, Buffer.from('alice'), null, Buffer.from([192, 0, 2, 1]),
    Buffer.from('curl/8.5.0'), null, null, null, Buffer.from('r-1'), null, details,
  ];
  const fields = [prevHash, ...canonical, crypto.randomBytes(32), Buffer.from('alice'), null, null];
  const chained = Buffer.concat([prevHash, ...canonical.flatMap((f) => (f === null ? [int32(-1)] : [int32(f.length), f]))]);
  return { bytes: row(fields), chained };
}

const inChunks = (bytes: Buffer, size: number): Buffer[] => {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
  return chunks;
};

function decode(chunks: Buffer[]): StoredRecord[] {
  const decoder = new StoredRecordDecoder();
  const records = chunks.flatMap((c) => decoder.push(c));
  decoder.finish();
  return records;
}

/**
 * The bytes `run` copies between buffers, counted at every public way of copying them
 * (`Buffer.concat`, `buf.copy`, `Uint8Array#set`).
 */
function bytesCopiedBy(run: () => void): number {
  const concat = mock.method(Buffer, 'concat') as unknown as Mock<(list: readonly Uint8Array[], totalLength?: number) => Buffer>;
  const copy = mock.method(Buffer.prototype, 'copy') as unknown as Mock<(target: Uint8Array, ...rest: number[]) => number>;
  const set = mock.method(Uint8Array.prototype, 'set') as unknown as Mock<(array: ArrayLike<number>, offset?: number) => void>;
  try {
    run();
    return (
      concat.mock.calls.reduce((n, call) => n + (call.result?.length ?? 0), 0) +
      copy.mock.calls.reduce((n, call) => n + (call.result ?? 0), 0) +
      set.mock.calls.reduce((n, call) => n + call.arguments[0].length, 0)
    );
  } finally {
    concat.mock.restore();
    copy.mock.restore();
    set.mock.restore();
  }
}

describe('StoredRecordDecoder on synthetic binary COPY output', () => {
  it('when one row carries a 16 MB field in 64 KB chunks, then each byte is copied a bounded number of times, not once per chunk (linear, not quadratic)', () => {
    const big = rowWithDetails(1, 16 * 1024 * 1024);
    const output = copyOutput([big.bytes]);
    const chunks = inChunks(output, 64 * 1024);
    let records: StoredRecord[] = [];
    const copied = bytesCopiedBy(() => {
      records = decode(chunks);
    });
    assert.equal(records.length, 1);
    assert.ok(records[0]!.chained.equals(big.chained));
    // Carrying the row by concatenating it with each new chunk copies ~N²/(2·64 KB) bytes: 2 GB here.
    assert.ok(copied <= 2 * output.length, `copied ${copied} bytes to decode ${output.length}`);
  });

  it('when rows of every size are cut into chunks of every size, then the records are the same and the copying stays linear', () => {
    const rows = [rowWithDetails(1, 10), rowWithDetails(2, 3 * 1024 * 1024), rowWithDetails(3, 0), rowWithDetails(4, 700_000), rowWithDetails(5, 5)];
    const output = copyOutput(rows.map((r) => r.bytes));
    for (const size of [1000, 4096, 65_536, 1_000_003, output.length]) {
      let records: StoredRecord[] = [];
      const copied = bytesCopiedBy(() => {
        records = decode(inChunks(output, size));
      });
      assert.deepEqual(records.map((r) => r.seq), [1, 2, 3, 4, 5], `chunks of ${size}`);
      for (const [i, record] of records.entries()) {
        assert.ok(record.chained.equals(rows[i]!.chained), `record ${i + 1}, chunks of ${size}`);
        assert.ok(storedChainHash(record).equals(crypto.createHash('sha256').update(rows[i]!.chained).digest()));
        const leaf = crypto.createHash('sha256').update(Buffer.from([0])).update(rows[i]!.chained.subarray(32)).digest();
        assert.ok(storedLeafHash(record).equals(leaf));
        assert.ok(record.chained.equals(rows[i]!.chained), 'the leaf hash gave back the byte it borrowed');
      }
      assert.ok(copied <= 2 * output.length, `chunks of ${size}: copied ${copied} bytes to decode ${output.length}`);
    }
  });

  it('when a record is decoded, then it views bytes no later chunk or record overwrites', () => {
    const rows = [rowWithDetails(1, 100), rowWithDetails(2, 200_000), rowWithDetails(3, 100)];
    const output = copyOutput(rows.map((r) => r.bytes));
    const decoder = new StoredRecordDecoder();
    const records: StoredRecord[] = [];
    for (const chunk of inChunks(output, 4096)) records.push(...decoder.push(Buffer.from(chunk)));
    decoder.finish();
    for (const record of records) storedLeafHash(record);
    assert.deepEqual(records.map((r) => r.chained.equals(rows[r.seq - 1]!.chained)), [true, true, true]);
  });

  it('when a field length is negative other than -1, or longer than any PostgreSQL field, then the output is refused', () => {
    const { bytes } = rowWithDetails(1, 10);
    // The length word of prev_hash, right after the field count.
    for (const length of [-2, -0x80000000, 0x40000000, 0x7fffffff]) {
      const broken = Buffer.from(bytes);
      broken.writeInt32BE(length, 2);
      const output = copyOutput([broken]);
      assert.throws(() => decode([output]), /field length/, `length ${length}`);
      assert.throws(() => decode(inChunks(output, 7)), /field length/, `length ${length} in chunks`);
    }
  });

  it('when the output is truncated, is not binary COPY output, or has bytes after its end, then it is refused', () => {
    const output = copyOutput([rowWithDetails(1, 100_000).bytes]);
    for (const cut of [3, 19, 40, 50_000, output.length - 2, output.length - 1]) {
      assert.throws(() => decode(inChunks(output.subarray(0, cut), 4096)), /ended early/, `cut at ${cut}`);
    }
    assert.throws(() => decode([Buffer.from('seq,hash\n1,0123456789abcdef\n')]), /not binary COPY output/);
    for (const extra of [[0], [0, 1], [0xff, 0xff]]) {
      assert.throws(() => decode([output, Buffer.from(extra)]), /after the end/, `extra ${extra.join(',')}`);
      assert.throws(() => decode([Buffer.concat([output, Buffer.from(extra)])]), /after the end/, `extra ${extra.join(',')} in one chunk`);
    }
    const wrongCount = copyOutput([rowWithDetails(1, 10).bytes]);
    wrongCount.writeInt16BE(20, SIGNATURE.length + 8);
    assert.throws(() => decode([wrongCount]), /20 columns/);
  });
});
