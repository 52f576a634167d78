// The `wandering` spider in JavaScript (Scrapy Cluster's WanderingSpider):
// yield the page with its step number in `attrs.step`, then follow one
// random link.
import { random } from 'spinneret:plugin/host@0.1.1';
import { item, request } from '../sdk/spinneret.js';

export function* parse(response) {
  const step = Number(response.meta('step') ?? 0);
  const attrs = JSON.parse(response.meta('attrs') ?? 'null') ?? {};
  attrs.step = step;
  const links = response.links();
  const followed = [];
  if (links.length > 0) {
    const link = links[Number(random() % BigInt(links.length))];
    yield request(link.url, { meta: { step: step + 1 }, walk: true });
    followed.push(link);
  }
  yield item({ links: followed, fields: { attrs } });
}
