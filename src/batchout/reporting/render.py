"""Render report blocks (headings, paragraphs, tables, lists, figures) to Markdown or to one
self-contained HTML page with the figures embedded as base64 PNG.

Usage: ``to_markdown(title, blocks)``; ``to_html(title, blocks, {"mnist.png": png_bytes})``;
a figure is ``Block("img", alt, (file name, caption))``

Self-contained because MLflow previews an HTML artifact inline (an iframe of the page's text), where
links to the PNG files beside it would not resolve; the PNGs stay in the folder as files too.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Block:
    kind: str  # "h2" | "h3" | "p" | "list" | "table" | "img"
    text: str = ""
    items: tuple[Any, ...] = ()  # list items, (header, *rows) for a table, (file, caption) for an img


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, blocks: Sequence[Block]) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if b.kind in ("h2", "h3"):
            out += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            out += [b.text, ""]
        elif b.kind == "list":
            out += [f"- {item}" for item in b.items] + [""]
        elif b.kind == "table":
            header, *rows = b.items
            out += ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows] + [""]
        elif b.kind == "img":
            out += [f"![{b.text}]({b.items[0]})", "", f"*{b.items[1]}*", ""]
    return "\n".join(out)


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#eee}"
        "figure{margin:1em 0 2em}img{max-width:100%}figcaption{font-size:.9em;color:#333}")


def to_html(title: str, blocks: Sequence[Block], images: dict[str, bytes]) -> str:
    """A self-contained page: ``images[file name]`` (PNG bytes) are embedded as data URIs."""
    e = html.escape
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
           f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"]
    for b in blocks:
        if b.kind in ("h2", "h3", "p"):
            out.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            header, *rows = b.items
            out.append("<table><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in header) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
                       + "</table>")
        elif b.kind == "img":
            data = base64.b64encode(images[b.items[0]]).decode("ascii")
            out.append(f"<figure><img alt='{e(b.text)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{e(b.items[1])}</figcaption></figure>")
    return "\n".join(out + ["</body></html>", ""])
