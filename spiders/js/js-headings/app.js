// The `headings` spider in JavaScript: the link spider, plus the page's
// title, h1/h2 headings and description picked with CSS selectors the host
// answers.
import { css, followAll, item } from '../sdk/spinneret.js';

export function parse(response) {
  const out = followAll(response);
  const fields = {
    title: css(response, 'title::text').get()?.trim(),
    headings: response.select('h1, h2').map((e) => e.text.trim()),
    description: css(response, 'meta[name=description]::attr(content)').get(),
  };
  const page = out.pop();
  const kept = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
  return [...out, item({ links: page.val.links, fields: kept })];
}
