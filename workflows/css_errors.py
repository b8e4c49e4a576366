"""Why a CSS selector does not parse, and where, in words an author can act on.

lexbor (selectolax) runs the selectors, so lexbor alone decides which are accepted: a
selector it parses is never refused here, one it refuses always is. But lexbor says only
"Can't parse CSS selector". cssselect (a dependency, through lxml) parses CSS too and
raises with the token and offset it stopped at, so it supplies the reason and position of a
selector lexbor refused. Where the two disagree (cssselect reads ``p:first`` and
``::text``, lexbor does not), the pseudo-class or pseudo-element lexbor refuses is found by
asking lexbor about each on its own.

Positions count characters from 0: ``h1[`` stops at position 3, its end.
"""

from __future__ import annotations

import re

import cssselect
from cssselect.parser import Token, TokenStream, parse_selector_group, tokenize
from selectolax.lexbor import LexborHTMLParser, SelectolaxError

_EMPTY_DOCUMENT = LexborHTMLParser("")
_UNSUPPORTED = "not a selector the HTML parser supports"
_GOT = re.compile(r"got <(?P<type>[A-Z]+)(?: '(?P<value>.*)')? at (?P<pos>\d+)>$", re.DOTALL)
_AT = re.compile(r" at (?P<pos>\d+)$")

# cssselect's "Expected ..." messages, by what they wanted, in plainer words.
_WANTED = {
    "Expected string or ident": "expected an attribute value",
    "Operator expected": "expected ']' or an operator (=, ~=, |=, ^=, $=, *=)",
    "Expected ']'": "expected ']'",
    "Expected ')'": "expected ')'",
    "Expected an argument": "expected an argument or ')'",
    "Expected '|'": "expected an attribute name",
}
# What "Expected ident" means after each token.
_NAME_AFTER = {
    "[": "expected an attribute name",
    ".": "expected a class name",
    ":": "expected a pseudo-class name",
    "|": "expected a name after '|'",
}


def lexbor_accepts(selector: str) -> bool:
    """Whether lexbor, which runs the selectors, parses ``selector``."""
    try:
        _EMPTY_DOCUMENT.css(selector)
    except SelectolaxError:
        return False
    return True


def css_error(selector: str) -> str | None:
    """Why lexbor cannot parse ``selector``, with the position where that is known."""
    if lexbor_accepts(selector):
        return None
    head = f"invalid CSS selector {selector!r}"
    if not selector.strip():
        return f"{head}: it is empty"
    return f"{head}: {_reason(selector)}"


def _reason(selector: str) -> str:
    stream = TokenStream(tokenize(selector), selector)
    try:
        list(parse_selector_group(stream))
    except cssselect.SelectorSyntaxError as error:
        message = str(error)
        if _GOT.search(message) or _AT.search(message):
            return _explain(message, stream.used)
        # No position: a pseudo-element or :not() where cssselect wants none, which lexbor
        # may accept (a nested :not()); only lexbor can say what it refuses.
        return _unsupported(selector) or _UNSUPPORTED
    return _unsupported(selector) or _UNSUPPORTED


def _explain(message: str, used: list[Token]) -> str:
    """cssselect's ``message`` in plainer words, with its position."""
    got = _GOT.search(message)
    if got is None:
        at = _AT.search(message)
        text = (message[: at.start()] if at else message).removeprefix("Got ")
        text = text[:1].lower() + text[1:]
        return f"{text} at position {at.group('pos')}" if at else text
    wanted = message[: got.start()].rstrip(", ")
    position = int(got.group("pos"))
    # The parser may have taken the token it stopped at, or only peeked at it.
    before = [t for t in used if t.pos < position and t.type != "S"]
    previous = before[-1].value if before else None
    if wanted in ("Expected ident", "Expected ident or '*'"):
        what = _NAME_AFTER.get(str(previous), "expected a name")
    elif wanted == "Expected selector":
        if got.group("type") == "EOF":
            after = f" after {previous!r}" if previous else ""
            what = f"expected a selector{after}"
        else:
            what = f"unexpected {got.group('value')!r}"
    else:
        what = _WANTED.get(wanted, wanted[:1].lower() + wanted[1:])
    if got.group("type") == "EOF":
        return f"{what} at position {position} (the end)"
    if what.startswith("unexpected"):
        return f"{what} at position {position}"
    return f"{what} at position {position}, got {got.group('value')!r}"


def _unsupported(selector: str) -> str | None:
    """The first pseudo-class or pseudo-element of ``selector`` lexbor refuses on its own."""
    try:
        tokens = [t for t in tokenize(selector) if t.type != "EOF"]
    except cssselect.SelectorSyntaxError:
        return None
    for i, token in enumerate(tokens):
        if not token.is_delim(":") or (i and tokens[i - 1].is_delim(":")):
            continue
        element = i + 1 < len(tokens) and tokens[i + 1].is_delim(":")
        end = _pseudo_end(selector, tokens, i + 2 if element else i + 1)
        pseudo = selector[token.pos : end]
        if not lexbor_accepts("*" + pseudo):
            kind = "pseudo-element" if element else "pseudo-class"
            return f"{kind} {pseudo!r} at position {token.pos} is not supported"
    return None


def _pseudo_end(selector: str, tokens: list[Token], name: int) -> int:
    """Where the pseudo whose name is ``tokens[name]`` ends, its arguments included."""
    if name + 1 >= len(tokens):
        return len(selector)
    end = tokens[name + 1].pos  # a name's own text may be escaped: its token is no guide
    if tokens[name + 1].is_delim("("):
        depth = 0
        for token in tokens[name + 1 :]:
            if token.is_delim("("):
                depth += 1
            elif token.is_delim(")"):
                depth -= 1
                if depth == 0:
                    return token.pos + 1
        return len(selector)
    return end
