"""The one response convention every writer and reader of responses follows.

A response is the text after the task's prompt template (`... ASSISTANT:`), stored with
exactly **one leading space** and no other leading whitespace: `" " + text.lstrip()`.

Why it matters: trl, the log-prob scorers and the reward models all join prompt + response as
one string. With a SentencePiece-style tokenizer (Llama, Mistral) `"ASSISTANT: Sure"` encodes the
response's first word as `▁Sure` (the token a model generates after `ASSISTANT:`), but
`"ASSISTANT:Sure"` encodes it as `Sure`, another token. If generated responses (decoded without
their leading space) and dataset responses (stored with it) are mixed in one preference pair,
the pair differs in its first token for a reason that has nothing to do with the preference,
and a model trained on it learns that token. Every generator returns, every task stores, every
stage that writes pairs and every scorer reads responses in this one form.
"""

from __future__ import annotations


def as_response(text: str) -> str:
    """`text` in the response convention: one leading space, the rest as it was (an empty or
    whitespace-only text stays empty: there is nothing to separate from the prompt)."""
    body = text.lstrip()
    return " " + body if body else ""


def response_body(text: str) -> str:
    """The response without the convention's separator, for inserting it into another text
    (e.g. a review prompt's `Response: {response}`)."""
    return text.strip()
