// Credentials in an image URL (user:password@, or a signed URL's token in the query) never
// reach status, Events or logs: every message that may carry a URL goes through redactUrls.
// Pure.

export const REDACTED = "REDACTED";

/** Query parameters that carry secrets in signed URLs (S3, GCS, Azure SAS, API keys, …). */
const SECRET_PARAM = /token|sig|secret|passw|pwd|key|credential|auth|session/i;
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;

/**
 * TEXT with the credentials of every URL in it replaced by REDACTED; anything else unchanged
 * (by pattern, not by re-serialising: the rest of the message stays as written). Userinfo is
 * everything up to the authority's last @, as URL parsers read it; more is cut rather than less.
 */
export function redactUrls(text: string): string {
  return text.replace(URL_IN_TEXT, (url) =>
    url
      .replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, `$1${REDACTED}@`)
      .replace(/([?&#]([^=&#]*)=)[^&#]*/g, (whole, head: string, name: string) =>
        SECRET_PARAM.test(name) ? `${head}${REDACTED}` : whole,
      ),
  );
}

/**
 * One URL as the user wrote it, credentials removed by parsing it as the download does (so
 * no spelling of a password — quotes, spaces — slips past a pattern). Not a URL: said as such.
 */
export function redactUrl(url: string): string {
  if (!URL.canParse(url)) return /^[a-z][a-z0-9+.-]*:/i.test(url) ? "(an invalid URL)" : url;
  const parsed = new URL(url);
  if (parsed.username || parsed.password) {
    parsed.username = REDACTED;
    parsed.password = "";
  }
  for (const name of [...parsed.searchParams.keys()])
    if (SECRET_PARAM.test(name)) parsed.searchParams.set(name, REDACTED);
  return parsed.href;
}
