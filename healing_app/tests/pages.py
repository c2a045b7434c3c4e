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


NAME_FIELD = '<label for="name">Name</label><input id="name" name="name">'
SHOWS_THE_SECOND_STEP = (
    "onclick=\"this.closest('fieldset').hidden = true; document.getElementById('step-2').hidden = false\""
)
NEXT_BUTTON = f'<button type="button" class="btn" {SHOWS_THE_SECOND_STEP}>Next</button>'


def two_steps(first: str, second: str, next_button: str = NEXT_BUTTON) -> str:
    """A form's fields in two steps, as wizards build them: the second is hidden until `next_button`, in the first,
    shows it."""
    return f'<fieldset id="step-1">{first}{next_button}</fieldset><fieldset id="step-2" hidden>{second}</fieldset>'
