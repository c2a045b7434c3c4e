// The API speaks snake_case; JavaScript callers speak camelCase. Keys are converted at the boundary,
// except inside values that belong to the caller (their params, secrets and a run's output), which
// travel exactly as written.

const OPAQUE = new Set(['params', 'secrets', 'output']);

export const toSnake = (key) => key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
export const toCamel = (key) => key.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

function convert(value, rename) {
  if (Array.isArray(value)) return value.map((item) => convert(item, rename));
  if (value === null || typeof value !== 'object' || value instanceof Date) return value;
  const out = {};
  for (const [key, inner] of Object.entries(value)) {
    const name = rename(key);
    out[name] = OPAQUE.has(key) || OPAQUE.has(name) ? inner : convert(inner, rename);
  }
  return out;
}

export const keysToSnake = (value) => convert(value, toSnake);
export const keysToCamel = (value) => convert(value, toCamel);

/** `self_healing_config.max_attempts` → `selfHealingConfig.maxAttempts`, for error fields; the caller's own
 * names under `params` and `secrets` stay as written (`params.my_key`). */
export function fieldToCamel(field) {
  const parts = field.split('.');
  const opaque = parts.findIndex((part) => OPAQUE.has(part));
  const renamed = (opaque === -1 ? parts : parts.slice(0, opaque + 1)).map(toCamel);
  return [...renamed, ...(opaque === -1 ? [] : parts.slice(opaque + 1))].join('.');
}
