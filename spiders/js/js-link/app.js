// The `link` spider in JavaScript: the page as an item, and every link the
// crawl's filters allow while depth < maxdepth.
import { followAll } from '../sdk/spinneret.js';

export function parse(response) {
  return followAll(response);
}
