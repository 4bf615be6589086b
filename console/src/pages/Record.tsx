import type { JSX } from 'preact';
import { ApiError, getJson } from '../api';
import { Time } from '../format';
import { Link } from '../router';
import type { InclusionProof } from '../types';
import { Card, ErrorNote, Outcome, useLoad } from '../ui';
import { seenRecords } from './History';

/** One record, every field, and its inclusion proof in the latest signed tree. */
export function RecordPage(props: { seq: number }): JSX.Element {
  const record = seenRecords.get(props.seq);
  const proof = useLoad(async () => {
    try {
      return await getJson<InclusionProof>(`/admin/audit/proof/${props.seq}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  }, [props.seq]);
  const fields: Array<[string, JSX.Element | string]> = record
    ? [
        ['Seq', String(record.seq)],
        ['Time', <Time iso={record.occurred_at} />],
        ['Event type', record.event_type],
        ['Outcome', <Outcome outcome={record.outcome} />],
        ['Reason', record.reason ?? '—'],
        ['Username', record.username ?? '—'],
        ['User id', record.user_id ?? '—'],
        ['IP', record.ip ?? '—'],
        ['User agent', record.user_agent ?? '—'],
        ['Device id', record.device_id ?? '—'],
        ['MFA method', record.mfa_method ?? '—'],
        ['Session id', record.session_id ?? '—'],
        ['Request id', record.request_id ?? '—'],
        ['Actor id', record.actor_id ?? '—'],
        ['Event id', record.event_id],
      ]
    : [];
  return (
    <div class="page" data-ready={proof.data !== undefined ? 'true' : undefined}>
      <div class="page-head">
        <h1>Record {props.seq}</h1>
        <Link href="/history">Back to the history</Link>
      </div>
      <div class="grid">
        <Card title="Record">
          {record ? (
            <>
              <dl class="facts" data-testid="record-fields">
                {fields.map(([k, v]) => (
                  <>
                    <dt key={`${k}-t`}>{k}</dt>
                    <dd key={`${k}-d`} class="mono">
                      {v}
                    </dd>
                  </>
                ))}
              </dl>
              <h3>Details</h3>
              <pre class="code">{JSON.stringify(record.details, null, 2)}</pre>
            </>
          ) : (
            <p class="muted">Open this record from the login history to see its fields; its proof is below.</p>
          )}
        </Card>
        <Card title="Inclusion proof">
          <ErrorNote error={proof.error} />
          {proof.loading ? <p class="muted">loading…</p> : null}
          {proof.data === null ? <p data-testid="proof-missing">Not yet in a signed checkpoint: checkpoints are signed every few seconds or records; try again shortly.</p> : null}
          {proof.data ? (
            <>
              <dl class="facts" data-testid="proof">
                <dt>Leaf hash (SHA-256 of 0x00 ‖ the canonical record)</dt>
                <dd class="mono" data-testid="leaf-hash">
                  {proof.data.leaf_hash}
                </dd>
                <dt>Leaf index</dt>
                <dd class="mono">{proof.data.leaf_index}</dd>
                <dt>Tree size</dt>
                <dd class="mono">{proof.data.tree_size}</dd>
                <dt>Root hash</dt>
                <dd class="mono">{proof.data.root_hash}</dd>
              </dl>
              <h3>Audit path ({proof.data.inclusion_proof.length} hashes, leaf upwards)</h3>
              <ol class="mono hashes">
                {proof.data.inclusion_proof.map((h, i) => (
                  <li key={i}>{h}</li>
                ))}
              </ol>
              <h3>Signed checkpoint</h3>
              <pre class="code">{proof.data.checkpoint}</pre>
            </>
          ) : null}
        </Card>
      </div>
    </div>
  );
}
