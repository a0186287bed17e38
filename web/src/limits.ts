/** The services' length limits on what users type, checked here too so that nothing is cut
 * short silently (an input's `maxlength` truncates a paste without a word). Counted in
 * characters (code points), as the services count them. */
export const TITLE_MAX = 200;
export const DESCRIPTION_MAX = 10_000;
export const DISPLAY_NAME_MAX = 100;

/** Why `value` is too long for a field that takes at most `max` characters, or undefined. */
export function tooLong(value: string, max: number, what: string): string | undefined {
  const length = [...value].length;
  if (length <= max) return undefined;
  return `${what} are at most ${max.toLocaleString("en")} characters; this one has ${length.toLocaleString("en")}. Shorten it by ${(length - max).toLocaleString("en")}.`;
}
