"""Pages of made-up sites that the end-to-end tests and the heal-scenarios bench both serve."""

from __future__ import annotations

from collections.abc import Iterable

# The 15th product's price, from a catalog that lists 15.
PRICE_15_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/catalog")
    return {"price": page.inner_text("#p15 .price")}
'''


def products(numbers: Iterable[int]) -> str:
    return "".join(f'<li id="p{n}"><span class="name">Mug {n}</span> <span class="price">{n}.00</span></li>'
                   for n in numbers)


def catalog(numbers: Iterable[int], *, load_more: bool = False) -> str:
    """A product list; with `load_more`, a button under it fetches 6 more at a time from /more (`more_products`)
    and goes once all 15 are shown."""
    button = (
        '<button id="more" type="button" onclick="more()">Load more</button><script>let next = 7;'
        "async function more() { const answer = await fetch('/more?from=' + next); next += 6;"
        " document.getElementById('products').insertAdjacentHTML('beforeend', await answer.text());"
        " if (next > 15) document.getElementById('more').remove(); }</script>"
    ) if load_more else ""
    return f'<h1>Products</h1><ul id="products">{products(numbers)}</ul>{button}'


def more_products(request) -> str:
    start = int(request.query.get("from", "1"))
    return products(range(start, min(start + 6, 16)))
