import { Router } from 'express';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const str: Schema = { type: 'string' };
const nullableStr: Schema = { type: ['string', 'null'] };
const int: Schema = { type: 'integer' };
const strings: Schema = { type: 'array', items: str };
const obj = (properties: Record<string, Schema>, required: string[] = Object.keys(properties), additional = false): Schema => ({
  type: 'object',
  properties,
  required,
  additionalProperties: additional,
});

const schemas: Record<string, Schema> = {
  Problem: obj(
    {
      type: str,
      title: str,
      status: int,
      code: str,
      detail: str,
      fields: strings,
      mfa_token: str,
    },
    ['type', 'title', 'status', 'code'],
  ),
  Tokens: obj(
    {
      access_token: str,
      token_type: { const: 'Bearer' },
      expires_in: int,
      refresh_token: { type: 'string', description: 'Absent when delivered in the __Host-authtrail_refresh cookie.' },
      refresh_expires_in: int,
    },
    ['access_token', 'token_type', 'expires_in', 'refresh_expires_in'],
  ),
  Health: obj({ status: { const: 'ok' } }),
  Ready: obj(
    {
      status: { enum: ['ready', 'not_ready'] },
      checks: obj({ database: { enum: ['ok', 'failing'] }, redis: { enum: ['ok', 'embedded', 'failing'] }, audit_writer: { enum: ['ok', 'failing'] } }),
      witnesses: {
        ...obj({ quorum_met: { type: 'boolean' }, quorum: int, checkpoint_size: int, cosigned: { type: 'object', additionalProperties: int } }),
        description: 'Only with AUDIT_WITNESSES set; informational: witnesses never make the gateway unready',
      },
    },
    ['status', 'checks'],
  ),
  Jwks: obj({ keys: { type: 'array', items: obj({ kty: str, kid: str, alg: { enum: ['ES256', 'RS256'] }, use: { const: 'sig' } }, ['kty', 'kid', 'alg', 'use'], true) } }),
  Role: { enum: ['user', 'security', 'admin', 'auditor'] },
  UserCreated: obj({ id: str, username: str, roles: { type: 'array', items: ref('Role') } }),
  User: obj({ id: str, username: str, roles: { type: 'array', items: ref('Role') }, status: { enum: ['active', 'disabled'] }, mfa_enabled: { type: 'boolean' } }),
  UserPage: obj({
    items: { type: 'array', items: obj({ id: str, username: str, roles: { type: 'array', items: ref('Role') }, status: str, mfa_enabled: { type: 'boolean' }, created_at: str }) },
    next_cursor: nullableStr,
  }),
  AuditEvent: obj({
    seq: int,
    event_id: str,
    occurred_at: { type: 'string', description: 'UTC, microseconds: YYYY-MM-DDTHH:MM:SS.ffffffZ' },
    event_type: str,
    outcome: { enum: ['success', 'failure'] },
    reason: nullableStr,
    username: nullableStr,
    user_id: nullableStr,
    ip: nullableStr,
    user_agent: nullableStr,
    device_id: nullableStr,
    mfa_method: { enum: ['none', 'totp', 'recovery_code', null] },
    session_id: nullableStr,
    request_id: nullableStr,
    actor_id: nullableStr,
    details: { type: ['object', 'null'] },
  }),
  EventPage: obj({ items: { type: 'array', items: ref('AuditEvent') }, next_cursor: nullableStr }),
  Summary: obj({
    from: str,
    to: str,
    bucket: { enum: ['hour', 'day'] },
    buckets: { type: 'array', items: obj({ start: str, success: int, failure: int }) },
    top_failing_ips: { type: 'array', items: obj({ ip: str, failures: int }) },
    most_targeted_usernames: { type: 'array', items: obj({ username: str, distinct_ips: int, failures: int }) },
    spraying_ips: { type: 'array', items: obj({ ip: str, distinct_usernames: int, failures: int }) },
    by_event_type: { type: 'array', items: obj({ event_type: str, outcome: { enum: ['success', 'failure'] }, count: int }) },
  }),
  Lockout: obj({ username: str, failures: int, locked_since: str, locked_until: str, lock_count: int }),
  LockoutList: obj({ items: { type: 'array', items: ref('Lockout') }, degraded: { type: 'boolean' } }),
  VerifyResult: obj(
    { valid: { type: 'boolean' }, checked: int, head_seq: int, first_invalid_seq: int, problem: str, detail: str, checkpoints_checked: int, from_seq: int },
    ['valid', 'checked', 'head_seq', 'checkpoints_checked', 'from_seq'],
  ),
  CheckpointList: obj({
    items: { type: 'array', items: obj({ seq: int, hash: str, signed_at: str, key_id: str, signature: str, root_hash: nullableStr, note: nullableStr }) },
    trusted_key_ids: strings,
  }),
  InclusionProof: obj({
    seq: int,
    leaf_index: int,
    leaf_hash: { type: 'string', description: 'SHA-256(0x00 ‖ canonical record), standard base64' },
    tree_size: int,
    root_hash: str,
    inclusion_proof: { type: 'array', items: str, description: 'RFC 9162 audit path, standard base64, from the leaf upwards' },
    checkpoint: { type: 'string', description: 'The signed checkpoint note of tree_size, with its cosignatures' },
  }),
  ConsistencyProof: obj({ from: int, to: int, from_root: str, to_root: str, consistency_proof: { type: 'array', items: str, description: 'RFC 9162 consistency proof, standard base64' } }),
  WitnessReport: obj({
    witnesses: {
      type: 'array',
      items: obj({
        name: str,
        url: str,
        verifier_key: str,
        cosigned_size: int,
        cosigned_latest: { type: 'boolean' },
        last_success_at: nullableStr,
        last_error: nullableStr,
        last_refusal: {
          oneOf: [
            { type: 'null' },
            obj({ reason: { enum: ['witness_rollback', 'witness_fork', 'witness_inconsistent', 'witness_rejected'] }, status: int, at: str, checkpoint_size: int, witness_size: { type: ['integer', 'null'] } }),
          ],
        },
      }),
    },
    quorum: obj({ required: int, checkpoint_size: int, cosigned_by: strings, met: { type: 'boolean' } }),
  }),
  Alert: obj({
    id: str,
    seq: { ...int, description: 'The alert.raised record' },
    raised_at: str,
    rule: { enum: ['password_spraying', 'credential_stuffing', 'lockout_storm', 'success_after_failures', 'new_device', 'admin_off_hours'] },
    severity: { enum: ['low', 'medium', 'high', 'critical'] },
    key: { type: 'string', description: 'The address (IPv6 by /64), username, actor id or "cluster" the alert is about' },
    status: { enum: ['open', 'resolved'] },
    details: { type: 'object', description: 'The alert.raised record\'s details (docs/alerts.md)' },
    resolution: { oneOf: [{ type: 'null' }, obj({ seq: int, resolved_at: str, actor_id: nullableStr, note: nullableStr })] },
  }),
  AlertPage: obj({ items: { type: 'array', items: ref('Alert') }, next_cursor: nullableStr }),
  Enrollment: obj({ secret: str, otpauth_uri: str }),
  RecoveryCodes: obj({ recovery_codes: strings }),
  RevokedSessions: obj({ revoked_sessions: int }),
};

const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ref('Problem') } } });
const json = (name: string, description = 'OK') => ({ description, content: { 'application/json': { schema: ref(name) } } });
const noContent = { description: 'No content' };
const body = (properties: Record<string, Schema>, required: string[] = Object.keys(properties)) => ({
  required: true,
  content: { 'application/json': { schema: obj(properties, required) } },
});
const bearer = [{ bearer: [] }];
const adminErrors = { 400: problem('Invalid request'), 401: problem('No valid access token'), 403: problem('Role or second factor missing'), 404: problem('No such user') };
const readErrors = { 400: problem('Invalid filter'), 401: problem('No valid access token'), 403: problem('Role security, auditor or admin required') };
/** /audit-log/*: a token of role security, auditor or admin, or none with AUDIT_LOG_PUBLIC=true. */
const transparencyErrors = { 401: problem('No valid access token (unless AUDIT_LOG_PUBLIC=true)'), 403: problem('Role security, auditor or admin required') };
const idParam = [{ name: 'id', in: 'path', required: true, schema: str }];
const usernameParam = [{ name: 'username', in: 'path', required: true, schema: str }];
const q = (name: string, schema: Schema = str, description?: string) => ({ name, in: 'query', required: false, schema, ...(description ? { description } : {}) });

/** The OpenAPI 3.1 description of every route; `test/integration/openapi.test.ts` holds it to the real app. */
export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: { title: 'authtrail', version: '0.1.0', description: 'Authentication gateway with a tamper-evident audit trail. Errors are RFC 9457 problem+json with a stable code.' },
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    paths: {
      '/login': {
        post: {
          summary: 'Log in with username and password (and optionally a TOTP code)',
          requestBody: body({ username: str, password: str, otp: str }, ['username', 'password']),
          responses: {
            200: json('Tokens'),
            400: problem('invalid_request'),
            401: problem('invalid_credentials, or mfa_required with mfa_token, or invalid_mfa'),
            413: problem('payload_too_large'),
            415: problem('unsupported_media_type'),
            429: problem('account_locked or too_many_attempts, with Retry-After'),
            503: problem('audit_unavailable or service_unavailable'),
          },
        },
      },
      '/login/mfa': {
        post: {
          summary: 'Complete a two-step login with a TOTP or recovery code',
          requestBody: body({ mfa_token: str, otp: str, recovery_code: str }, ['mfa_token']),
          responses: { 200: json('Tokens'), 400: problem('invalid_request'), 401: problem('invalid_mfa'), 429: problem('account_locked or too_many_attempts'), 503: problem('audit_unavailable') },
        },
      },
      '/refresh': {
        post: {
          summary: 'Rotate a refresh token (body, or the refresh cookie with an allowed Origin)',
          requestBody: { required: false, content: { 'application/json': { schema: obj({ refresh_token: str }, []) } } },
          responses: { 200: json('Tokens'), 401: problem('invalid_refresh_token'), 503: problem('audit_unavailable') },
        },
      },
      '/logout': {
        post: {
          summary: 'Revoke the session of a refresh token',
          requestBody: { required: false, content: { 'application/json': { schema: obj({ refresh_token: str }, []) } } },
          responses: { 204: noContent, 503: problem('audit_unavailable') },
        },
      },
      '/setup': {
        post: {
          summary: 'Create the first administrator with the one-time token of the setup link printed at start (only while no user exists)',
          requestBody: body({ setup_token: str, username: str, password: str }),
          responses: {
            201: json('UserCreated', 'Created: roles admin and security'),
            400: problem('invalid_request'),
            401: problem('invalid_setup_token'),
            409: problem('setup_completed'),
            413: problem('payload_too_large'),
            415: problem('unsupported_media_type'),
            503: problem('audit_unavailable'),
          },
        },
      },
      '/': { get: { summary: 'Redirects to the console', responses: { 302: { description: 'Location: /console/' } } } },
      '/.well-known/jwks.json': { get: { summary: 'Public keys of every token that may still be valid', responses: { 200: { description: 'JWK Set', content: { 'application/jwk-set+json': { schema: ref('Jwks') } } } } } },
      '/healthz': { get: { summary: 'Liveness', responses: { 200: json('Health') } } },
      '/readyz': { get: { summary: 'Readiness: database, Redis, audit writer', responses: { 200: json('Ready'), 503: json('Ready', 'Not ready') } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: str } } } } } },
      '/openapi.json': { get: { summary: 'This document', responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } } } } },
      '/mfa/totp/enroll': { post: { summary: 'Start TOTP enrollment (re-authenticated: current_password, or a login within 5 minutes)', security: bearer, requestBody: { ...body({ current_password: str }, []), required: false }, responses: { 200: json('Enrollment'), 400: problem('invalid_request'), 401: problem('unauthorized (no valid access token) or invalid_credentials (current_password)'), 403: problem('reauthentication_required'), 409: problem('mfa_already_enabled'), 429: problem('account_locked or too_many_attempts') } } },
      '/mfa/totp/confirm': { post: { summary: 'Confirm TOTP enrollment with a code (re-authenticated)', security: bearer, requestBody: body({ otp: str, current_password: str }, ['otp']), responses: { 200: json('RecoveryCodes'), 400: problem('invalid_request'), 401: problem('unauthorized (no valid access token), invalid_credentials (current_password) or invalid_mfa'), 403: problem('reauthentication_required'), 429: problem('account_locked or too_many_attempts') } } },
      '/mfa/totp/disable': { post: { summary: 'Disable TOTP (a current code, re-authenticated)', security: bearer, requestBody: body({ otp: str, current_password: str }, ['otp']), responses: { 204: noContent, 400: problem('invalid_request'), 401: problem('unauthorized (no valid access token), invalid_credentials (current_password) or invalid_mfa'), 403: problem('reauthentication_required'), 429: problem('account_locked or too_many_attempts') } } },
      '/mfa/recovery-codes': { post: { summary: 'Replace the recovery codes (a current code, re-authenticated)', security: bearer, requestBody: body({ otp: str, current_password: str }, ['otp']), responses: { 200: json('RecoveryCodes'), 400: problem('invalid_request'), 401: problem('unauthorized (no valid access token), invalid_credentials (current_password) or invalid_mfa'), 403: problem('reauthentication_required'), 429: problem('account_locked or too_many_attempts') } } },
      '/me/password': { post: { summary: 'Change the own password; revokes every session', security: bearer, requestBody: body({ current_password: str, new_password: str }), responses: { 204: noContent, 400: problem('invalid_request'), 401: problem('unauthorized (no valid access token) or invalid_credentials (current_password)'), 429: problem('account_locked or too_many_attempts') } } },
      '/admin/users': {
        get: { summary: 'List and search users', security: bearer, parameters: [q('q'), q('status', { enum: ['active', 'disabled'] }), q('role', ref('Role')), q('limit', int), q('cursor')], responses: { 200: json('UserPage'), ...readErrors } },
        post: {
          summary: 'Create a user',
          security: bearer,
          requestBody: body({ username: str, password: str, roles: { type: 'array', items: ref('Role') } }, ['username', 'password']),
          responses: { 201: json('UserCreated', 'Created'), ...adminErrors, 409: problem('username_taken') },
        },
      },
      '/admin/users/{id}': { get: { summary: 'One user', security: bearer, parameters: idParam, responses: { 200: json('User'), ...adminErrors } } },
      '/admin/users/{id}/disable': { post: { summary: 'Disable a user and revoke their sessions', security: bearer, parameters: idParam, responses: { 200: json('User'), ...adminErrors } } },
      '/admin/users/{id}/enable': { post: { summary: 'Enable a user', security: bearer, parameters: idParam, responses: { 200: json('User'), ...adminErrors } } },
      '/admin/users/{id}/roles': { put: { summary: 'Set roles', security: bearer, parameters: idParam, requestBody: body({ roles: { type: 'array', items: ref('Role') } }), responses: { 200: json('User'), ...adminErrors } } },
      '/admin/users/{id}/password': { post: { summary: 'Reset the password; revokes every session', security: bearer, parameters: idParam, requestBody: body({ password: str }), responses: { 204: noContent, ...adminErrors } } },
      '/admin/users/{id}/mfa/reset': { post: { summary: 'Turn MFA off for a user', security: bearer, parameters: idParam, responses: { 200: json('User'), ...adminErrors } } },
      '/admin/users/{id}/sessions/revoke': { post: { summary: 'Revoke every session of a user', security: bearer, parameters: idParam, responses: { 200: json('RevokedSessions'), ...adminErrors } } },
      '/admin/login-events': {
        get: {
          summary: 'Login history, newest first; Accept application/x-ndjson or text/csv exports the whole result',
          security: bearer,
          parameters: [
            q('username'), q('user_id'), q('ip', str, 'An address or a CIDR block'), q('event_type'), q('outcome', { enum: ['success', 'failure'] }), q('device_id'),
            q('from', str, 'RFC 3339, inclusive'), q('to', str, 'RFC 3339, exclusive'), q('limit', int, 'At most 1000'), q('cursor', str, 'next_cursor of the previous page'),
          ],
          responses: {
            200: {
              description: 'A page, or an export',
              content: { 'application/json': { schema: ref('EventPage') }, 'application/x-ndjson': { schema: str }, 'text/csv': { schema: str } },
            },
            ...readErrors,
          },
        },
      },
      '/admin/login-events/summary': {
        get: { summary: 'Counts for dashboards', security: bearer, parameters: [q('from'), q('to'), q('bucket', { enum: ['hour', 'day'] }), q('top', int)], responses: { 200: json('Summary'), ...readErrors } },
      },
      '/admin/lockouts': { get: { summary: 'Current lockouts', security: bearer, responses: { 200: json('LockoutList'), ...readErrors } } },
      '/admin/lockouts/{username}': {
        get: { summary: 'One lockout', security: bearer, parameters: usernameParam, responses: { 200: json('Lockout'), ...readErrors, 404: problem('Not locked') } },
        delete: { summary: 'Unlock', security: bearer, parameters: usernameParam, responses: { 204: noContent, ...readErrors } },
      },
      '/admin/audit/verify': {
        get: { summary: 'Verify the chain (from the last verified checkpoint, or full=true)', security: bearer, parameters: [q('full', { enum: ['true', 'false'] })], responses: { 200: json('VerifyResult'), ...readErrors } },
      },
      '/admin/audit/checkpoints': { get: { summary: 'Signed checkpoints, newest first', security: bearer, parameters: [q('limit', int)], responses: { 200: json('CheckpointList'), ...readErrors } } },
      '/admin/audit/witnesses': {
        get: { summary: 'Each witness\'s latest stored cosigned size, last error and refusal; quorum of the latest checkpoint', security: bearer, responses: { 200: json('WitnessReport'), ...readErrors } },
      },
      '/admin/audit/proof/{seq}': {
        get: {
          summary: 'Inclusion proof of a record in a checkpointed Merkle tree (default: the latest checkpoint)',
          security: bearer,
          parameters: [{ name: 'seq', in: 'path', required: true, schema: str }, q('tree_size', str, 'The size of a signed checkpoint')],
          responses: { 200: json('InclusionProof'), ...readErrors, 404: problem('Unknown seq, or no checkpoint of that size') },
        },
      },
      '/admin/audit/consistency': {
        get: {
          summary: 'Consistency proof between two checkpointed tree sizes',
          security: bearer,
          parameters: [q('from', str, 'The size of a signed checkpoint'), q('to', str, 'The size of a signed checkpoint')],
          responses: { 200: json('ConsistencyProof'), ...readErrors, 404: problem('No checkpoint of that size') },
        },
      },
      '/admin/alerts': {
        get: {
          summary: 'Alerts raised by the alert engine, newest first (default: open ones)',
          security: bearer,
          parameters: [
            q('rule', { enum: ['password_spraying', 'credential_stuffing', 'lockout_storm', 'success_after_failures', 'new_device', 'admin_off_hours'] }),
            q('status', { enum: ['open', 'resolved', 'all'] }), q('limit', int, 'At most 1000'), q('cursor', str, 'next_cursor of the previous page'),
          ],
          responses: { 200: json('AlertPage'), ...readErrors },
        },
      },
      '/admin/alerts/{id}/resolve': {
        post: {
          summary: 'Resolve an alert: writes alert.resolved with the actor (roles security, admin)',
          security: bearer,
          parameters: idParam,
          requestBody: { required: false, content: { 'application/json': { schema: obj({ note: str }, []) } } },
          responses: {
            204: noContent,
            400: problem('Invalid request'),
            401: problem('No valid access token'),
            403: problem('Role security or admin required'),
            404: problem('No such alert'),
            409: problem('alert_already_resolved'),
          },
        },
      },
      '/audit-log/checkpoint': {
        get: {
          summary: 'The latest checkpoint (C2SP tlog-checkpoint signed note) with every cosignature',
          security: [...bearer, {}],
          responses: { 200: { description: 'The signed note', content: { 'text/plain': { schema: str } } }, ...transparencyErrors, 404: problem('No checkpoint yet') },
        },
      },
      '/audit-log/key': {
        get: {
          summary: 'The note verifier key of the checkpoint key: <origin>+<hex key hash>+<base64>',
          security: [...bearer, {}],
          responses: { 200: { description: 'One line', content: { 'text/plain': { schema: str } } }, ...transparencyErrors, 404: problem('No checkpoint key') },
        },
      },
      '/audit-log/tile/{level}/{index}': {
        get: {
          summary: 'A hash tile (C2SP tlog-tiles): tile/<L>/<N>[.p/<W>]',
          security: [...bearer, {}],
          parameters: [
            { name: 'level', in: 'path', required: true, schema: str },
            { name: 'index', in: 'path', required: true, schema: str, description: 'N in groups of three digits (x001/x234/067), then .p/<W> for a partial tile: may span several segments' },
          ],
          responses: {
            200: { description: 'Concatenated 32-byte hashes', content: { 'application/octet-stream': { schema: { type: 'string', contentEncoding: 'binary' } } } },
            ...transparencyErrors,
            400: problem('Not a tile path'),
            404: problem('No such tile (yet)'),
          },
        },
      },
    },
  };
}

export function openApiRoutes(): Router {
  const document = JSON.stringify(openApiDocument());
  const router = Router();
  router.get('/openapi.json', (_req, res) => {
    res.type('application/json').set('Cache-Control', 'public, max-age=300').send(document);
  });
  return router;
}
