// @ts-check
// Naming rules of the generated TypeScript. Protocol names are snake_case identifiers (checked by
// the parser), so these helpers only reshape them.

/** `xdg_toplevel` -> `XdgToplevel`; `zwp_linux_dmabuf_v1` -> `ZwpLinuxDmabufV1`. */
export function pascal(/** @type {string} */ snake) {
  return snake
    .split('_')
    .filter((part) => part !== '')
    .map((part) => part[0].toUpperCase() + part.slice(1))
    .join('');
}

/** `xdg_shell` -> `xdgShell`. */
export function camel(/** @type {string} */ snake) {
  const p = pascal(snake);
  return p[0].toLowerCase() + p.slice(1);
}

/** `xdg_toplevel` -> `XDG_TOPLEVEL`. */
export function upper(/** @type {string} */ snake) {
  return snake.toUpperCase();
}

/** Object keys for enum entries: a leading digit gets an underscore (`90` -> `_90`). */
export function enumKey(/** @type {string} */ name) {
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

/**
 * Words that cannot name a parameter in strict-mode code, plus the names the generated functions
 * use for their own parameters (handler `ctx`; dispatcher `h`, `ctx`, `opcode`, `r`; writer `w`,
 * `objectId`). An argument with one of these names gets a trailing underscore.
 */
const TAKEN = new Set([
  ...[
    'arguments',
    'await',
    'break',
    'case',
    'catch',
    'class',
    'const',
    'continue',
    'debugger',
    'default',
    'delete',
    'do',
    'else',
    'enum',
    'eval',
    'export',
    'extends',
    'false',
    'finally',
    'for',
    'function',
    'if',
    'implements',
    'import',
    'in',
    'instanceof',
    'interface',
    'let',
    'new',
    'null',
    'package',
    'private',
    'protected',
    'public',
    'return',
    'static',
    'super',
    'switch',
    'this',
    'throw',
    'true',
    'try',
    'typeof',
    'var',
    'void',
    'while',
    'with',
    'yield',
  ],
  ...['h', 'ctx', 'opcode', 'r', 'w', 'objectId'],
]);

/** A parameter / local name for an argument. */
export function paramName(/** @type {string} */ name) {
  return TAKEN.has(name) ? `${name}_` : name;
}
