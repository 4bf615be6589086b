import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config.js';

/** The problems `loadConfig` names for `env`; fails the test when the configuration is accepted. */
export function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.problems];
  }
  assert.fail('configuration was accepted');
}
