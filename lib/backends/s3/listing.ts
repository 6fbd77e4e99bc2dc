// One page of a ListObjectsV2 answer. The client library's listing cannot serve n2s: its XML
// reader decodes only &lt; &gt; &amp; (a key holding " or ' comes back as &quot; or &#x27;) and
// drops white space at the start of a key, and it cannot ask for URL-encoded keys. So n2s sends
// the listing requests through the library with encoding-type=url and reads the pages here:
// keys URL-decoded where the server says it encoded them, else with every XML entity decoded.

/** One object of a listing page. */
export interface Listed {
  key: string;
  size: number;
  /** The ETag without its quotes; "" when the server sent none. */
  etag: string;
}

/** What one page says. */
export interface ListPage {
  objects: Listed[];
  /** The token for the next page; absent on the last page. */
  next?: string;
  truncated: boolean;
}

/** Replaces the five predefined XML entities and numeric character references. */
export function xmlDecode(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (all, e: string) => {
    switch (e.toLowerCase()) {
      case "amp":
        return "&";
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "quot":
        return '"';
      case "apos":
        return "'";
    }
    const n = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return Number.isFinite(n) && n <= 0x10ffff ? String.fromCodePoint(n) : all;
  });
}

/** The raw text of the first <tag> element in `xml`, or undefined. */
function field(xml: string, tag: string): string | undefined {
  return new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml)?.[1];
}

/** Reads one ListObjectsV2 page; throws when it is not one. */
export function parseListPage(xml: string): ListPage {
  if (!/<ListBucketResult[\s>]/.test(xml)) {
    throw new Error(`not a ListObjectsV2 answer: ${xml.slice(0, 200)}`);
  }
  // With encoding-type=url, keys come as in a query string (a space as "+").
  const urlEncoded = field(xml, "EncodingType")?.trim().toLowerCase() === "url";
  const key = (raw: string) =>
    urlEncoded ? decodeURIComponent(xmlDecode(raw).replaceAll("+", " ")) : xmlDecode(raw);
  const objects: Listed[] = [];
  for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const rawKey = field(m[1], "Key");
    if (rawKey === undefined) continue;
    objects.push({
      key: key(rawKey),
      size: Number(field(m[1], "Size")),
      etag: xmlDecode(field(m[1], "ETag") ?? "").replace(/^(W\/)?"(.*)"$/, "$2"),
    });
  }
  const truncated = field(xml, "IsTruncated")?.trim() === "true";
  const token = field(xml, "NextContinuationToken");
  return { objects, truncated, next: token === undefined ? undefined : xmlDecode(token) };
}
