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

The one exception is where a response is *joined* to a prompt that already ends in whitespace,
as a chat template's generation prompt does (`<|im_start|>assistant\n`): the model generated the
response's first word right after that newline (`Sure`, not `ĠSure`), so the joined text takes
the response's body alone (:func:`after_prompt`). Every place that joins prompt + response for
a model (the preference trainers, log-prob scoring, the reward models) goes through it; for a
prompt ending in a word or colon (`... ASSISTANT:`) it changes nothing.
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


def after_prompt(prompt: str, response: str) -> str:
    """`response` as it follows `prompt` in one joined text: as stored (one leading space) after
    a prompt that ends in a word or colon, its body alone after a prompt that already ends in
    whitespace (a chat template's newline), so that the joined text encodes to the tokens the
    model generated after that prompt."""
    return response.lstrip() if prompt[-1:].isspace() else response


def joined_pairs(rows):
    """Preference rows (`prompt`, `chosen`, `rejected`, other columns kept) with each response
    as :func:`after_prompt` joins it to the row's prompt."""
    return [{**r, "chosen": after_prompt(r["prompt"], r["chosen"]),
             "rejected": after_prompt(r["prompt"], r["rejected"])} for r in rows]
