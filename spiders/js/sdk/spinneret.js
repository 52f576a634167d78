// Write Spinneret spiders in JavaScript.
//
// A spider is a module that exports `parse(response)`, returning (or
// yielding, from a generator) requests, items and data records
// (`record({ name, price })`, sent apart from the page's result):
//
//     import { request, item } from '../sdk/spinneret.js';
//
//     export function* parse(response) {
//       const links = response.links();
//       for (const link of links.slice(0, 5)) yield request(link.url);
//       yield item({ links, fields: { kind: 'headline' } });
//     }
//
// `response` is the host's page: url(), responseUrl(), status(),
// header(name), headers(), body(), text(), depth(), maxdepth(), meta(name)
// and links() (extracted natively by the host with the crawl's filters);
// response.select(css) gives the elements a CSS selector matches (tag,
// text, texts, attrs, html), parsed by the host, and `css(response,
// 'h2 a::attr(href)')` picks strings from them as parsel does.
// Host services: `import { log, count, random } from 'spinneret:plugin/host@0.1.1'`.
// `just guests` builds every spider in spiders/js/ (componentize-js).

/** A request to crawl next. `priority` unset = the parent's minus 10. */
export function request(url, opts = {}) {
  return {
    tag: 'request',
    val: {
      url,
      priority: opts.priority,
      spiderid: opts.spiderid,
      method: opts.method,
      headers: Object.entries(opts.headers ?? {}),
      body: opts.body,
      // `walk: true`: the page's step of a walk (one link per page),
      // bounded by crawl.max_walk_steps instead of maxdepth.
      meta: fields(opts.walk ? { ...opts.meta, walk: true } : opts.meta),
      dontFilter: opts.dontFilter ?? false,
    },
  };
}

/** The page's result: the links it followed, and fields added to it. */
export function item({ links = [], fields: extra } = {}) {
  return { tag: 'item', val: { links, fields: fields(extra) } };
}

/** A data record drawn from the page (its fields, any JSON values): sent
 *  apart from the page's result, on `<prefix>.items`. */
export function record(values) {
  return { tag: 'record', values };
}

/** The strings a CSS query picks, as parsel's `response.css(query)`: each
 *  match's outer HTML, or with `::text` its own text nodes, with
 *  `::attr(name)` that attribute. The array has parsel's `get()` (the
 *  first, or undefined) and `getall()`. */
export function css(response, query) {
  const q = query.trimEnd();
  let sel = q;
  let pick = (e) => [e.html];
  const attr = q.match(/^(.*)::attr\(\s*([^)]*?)\s*\)$/s);
  if (q.endsWith('::text')) {
    sel = q.slice(0, -'::text'.length);
    pick = (e) => e.texts;
  } else if (attr) {
    sel = attr[1];
    pick = (e) => e.attrs.filter(([k]) => k === attr[2]).map(([, v]) => v);
  }
  const out = response.select(sel).flatMap(pick);
  out.get = () => out[0];
  out.getall = () => [...out];
  return out;
}

/** The link spider's rule: a request per link while depth < maxdepth. */
export function followAll(response) {
  if (response.depth() >= response.maxdepth()) return [item()];
  const links = response.links();
  return [...links.map((l) => request(l.url)), item({ links })];
}

/** The component's `parser` export for a module's `parse`. A thrown error
 *  fails that page (reported with the message); the crawl goes on. */
export function parser(parse) {
  return {
    parse(response) {
      try {
        const out = [];
        for (const o of parse(response) ?? []) {
          if (o.tag === 'record') response.emit(fields(o.values));
          else out.push(o);
        }
        return out;
      } catch (e) {
        throw `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
      }
    },
  };
}

function fields(obj) {
  return Object.entries(obj ?? {}).map(([name, value]) => ({
    name,
    value: JSON.stringify(value),
  }));
}
