// The `catalogue` spider in JavaScript: a shop's products as data records,
// picked with CSS selectors the host answers (see spiders/catalogue).
import { css, item, record, request } from '../sdk/spinneret.js';

/** A printed price (`£12.50`) as a number. */
const price = (printed) => Number.parseFloat(printed.trim().replace(/^£/, ''));

export function* parse(response) {
  const sku = css(response, 'article.product::attr(data-sku)').get();
  if (sku !== undefined) {
    const text = (query) => (css(response, query).get() ?? '').trim();
    yield record({
      sku,
      name: text('article.product h1::text'),
      price: price(text('.price::text')),
      in_stock: response.select('.stock.in').length > 0,
      description: text('.description p::text'),
    });
  } else if (response.select('table.prices tbody tr').length > 0) {
    const [skus, names, prices] = ['sku', 'name', 'price'].map((c) =>
      css(response, `table.prices td.${c}::text`).getall(),
    );
    for (const [i, s] of skus.entries()) {
      yield record({ sku: s, name: names[i], price: price(prices[i]) });
    }
  } else {
    const hrefs = [
      ...css(response, 'li.product a::attr(href)').getall(),
      ...css(response, 'a[rel=next]::attr(href)').getall(),
    ];
    for (const href of hrefs) yield request(href);
  }
  yield item();
}
