"""A memory's Markdown as HTML that is safe to put in a page: rendered, then sanitised by nh3 (Ammonia)."""

import markdown
import nh3

# What Markdown produces, and nothing else: no raw HTML survives (no script, style, iframe, img, attributes
# that run code); links get rel="noopener noreferrer nofollow" from nh3.
TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "del",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
SCHEMES = {"http", "https", "mailto"}


def render(text: str) -> str:
    """The Markdown text as sanitised HTML."""
    html = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists"], output_format="html")
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=SCHEMES)
