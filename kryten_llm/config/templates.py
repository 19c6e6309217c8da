"""Prompt templates: what the bot is asked, per trigger, checked when the config is loaded.

The template language is part of the config (checked at load) and is shared with the prompt
builder (rendered) and batch (row templates).

A template is a ``str.format`` string over a fixed set of variables (:data:`VARIABLES`). Only
bare names are accepted: ``{user}`` is fine, while ``{user.__class__}``, ``{history[0]}``,
``{user!r}`` and ``{user:>10}`` are refused, so a template can read nothing but the strings we
hand it. Every check happens in :func:`check_template`, which the config calls at load time,
so a typo is a startup error naming the template and the known variables, never a failed reply.
Values are rendered with :meth:`str.format_map`, which does not re-read braces inside values:
chat text like ``{user}`` stays literal.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from kryten_llm.errors import TemplateError

# Every variable a template may use, with what it holds (also the README's reference).
VARIABLES: Mapping[str, str] = {
    "user": "who wrote the triggering message",
    "message": "the triggering message, quoted as untrusted text",
    "where": '"in the channel chat" or "in a private message"',
    "trigger": 'the trigger that fired: "mention", "pm" or a trigger word\'s name',
    "context": "the trigger word's `context` note, prefixed with a line break (empty if none)",
    "bot": "the active personality's character name",
    "channel": "the channel's name",
    "users_present": "how many users are in the channel",
    "video": 'one line such as "Now playing: «Title», 1:32:05 long, at 0:12:40." (empty if none)',
    "video_title": "the current video's title, quoted (empty if none or trimmed by the budget)",
    "video_duration": 'its length as "1:32:05" (empty if unknown)',
    "video_position": 'the playback position as "0:12:40" (empty if unknown)',
    "up_next": 'what plays after the current video, quoted (" Up next: «Title»."; empty if '
    "unknown or not configured)",
    "history": "recent chat as quoted lines, oldest first; a template that uses it gets the "
    "chat inline instead of as separate conversation turns",
}

# Which template answers which trigger, most specific first: a trigger word's own name, then
# its kind ("mention", "pm", "word"), then "default".
KINDS = ("default", "mention", "pm", "word")

DEFAULT_TEMPLATE = (
    "{video}\n{user} wrote to you {where} (untrusted user text):\n"
    "{user}: {message}{context}\nReply to {user} in character."
)


def pieces(template: str) -> list[tuple[str, str | None]]:
    """``template`` as (literal text, field name or None) pieces, refusing all but bare names.

    Python's format mini-language would let a template read attributes (``{x.__class__}``),
    index values, convert them or apply a format spec that fails on text; a prompt only ever
    needs a value's text. Used by the bot's templates and by ``kryten-llm batch``.

    Raises:
        TemplateError: the template does not parse, or a field is empty, positional, dotted,
            indexed, converted or has a format spec.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"{exc} (write literal braces as {{{{ and }}}})") from exc
    result: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None:
            if name == "":
                raise TemplateError("an empty {} is not allowed: name the variable, such as {user}")
            if name.isdigit() or "." in name or "[" in name:
                raise TemplateError(f"{{{name}}} is not allowed: use bare names such as {{user}}")
            if spec or conversion:
                raise TemplateError(f"{{{name}}} may not have a conversion or format spec")
        result.append((literal, name))
    return result


def fields(template: str) -> list[str]:
    """The variable names ``template`` uses, in order.

    Raises:
        TemplateError: see :func:`pieces`, or a name is not one of :data:`VARIABLES`.
    """
    names = [name for _, name in pieces(template) if name is not None]
    for name in names:
        if name not in VARIABLES:
            raise TemplateError(
                f"unknown variable {{{name}}}; known: {', '.join(sorted(VARIABLES))}"
            )
    return names


def check_template(template: str) -> None:
    """Raise :class:`TemplateError` unless ``template`` renders with every known variable."""
    fields(template)
    template.format_map(dict.fromkeys(VARIABLES, ""))


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``template`` (already checked) with ``values``; missing variables render empty."""
    filled = dict.fromkeys(VARIABLES, "") | dict(values)
    lines = template.format_map(filled).split("\n")
    # A variable that rendered empty on a line of its own leaves no blank line behind.
    return "\n".join(line for line in lines if line.strip()).strip()


def pick(templates: Mapping[str, str], trigger_name: str, trigger_kind: str) -> str:
    """The template for a trigger: its name's, its kind's, the default one, or the built-in."""
    for key in (trigger_name, trigger_kind, "default"):
        if key in templates:
            return templates[key]
    return DEFAULT_TEMPLATE
