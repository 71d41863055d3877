"""The review and rewrite prompts of the released SIPO HelpSteer pipeline (zyttt-coder/SIPO,
`scripts/SIPO/review.py` TEMPLATE and `scripts/SIPO/rewrite.py` PROMPT), as data.

Each released prompt is one conversation turn holding a one-shot demonstration, then the actual
request:

- review:  `BEGINNING OF CONVERSATION: USER: <demo>\n\n\nQuestion: <prompt>\nResponse: <response>\n
  Generate three suggestions on how to make the response more correct and verbose. ASSISTANT:`
  followed by the forced start of the answer `The response can be more correct and verbose by\n`
  (kept as the review's first words); generated with `max_length=1200` (prompt + review tokens);
- rewrite: `BEGINNING OF CONVERSATION: USER: <demo>\n\n\nQuestion: <prompt>\nResponse: <response>\n
  Review: <review>\nRevise the 'Response' based on the 'Review' to improve its correctness and
  verbosity. ASSISTANT:`; generated with `max_length=1600`;
- both outputs are cut at the first `Question:` (where the model, following the demonstration,
  starts another example) and stripped.

So `task.format_prompt(REVIEW_TEMPLATE.format(prompt=p, response=r)) + REVIEW_PREFIX` is the
released review input, character for character (tests/test_paper_tasks.py checks it against the
released strings).
"""

from __future__ import annotations

#: the review demonstration: a question, a response, the instruction, and its review
REVIEW_DEMO = (
    'Question: What is the history of shipping and trade in the Mediterranean region, and how has it changed '
    'over time?\nResponse: The Mediterranean region has a long and rich history of shipping and trade, dating '
    'back to ancient times. In the early days, the region was a hub of trade and commerce, with goods and '
    'people traveling between different parts of the world. Over time, the region has undergone significant '
    'changes, with the rise of new powers and the development of new technologies. Today, the Mediterranean '
    'region is still an important center of trade and commerce, with a diverse range of goods and services '
    'being traded between different countries. However, the region has also faced significant challenges '
    'in recent years, including political instability, economic difficulties, and environmental degradation. '
    'These challenges have led to a decline in shipping and trade in the region, but there are also efforts '
    "underway to revitalize the region's economy and promote sustainable development.\nGenerate three suggestions "
    'on how to make the response more correct and verbose.\nASSISTANT:The response can be more correct and '
    'verbose by\nAdd Specific Examples - Include simple examples of civilizations like the Greeks, Romans, '
    'or Phoenicians to show their role in Mediterranean trade.\nExplain Key Changes Clearly - Break down major '
    'changes in shipping technology and trade methods into clear, easy-to-understand points.\nClarify Modern '
    'Challenges - Use straightforward language to describe current issues such as political instability and '
    'environmental concerns affecting trade.'
)

#: the rewrite demonstration: a question, a response, its review, the instruction, and the rewrite
REWRITE_DEMO = (
    'Question: What is the most common use for dill in home cooking?\nResponse: Dill is a versatile herb that '
    'can be used in a variety of dishes to add flavor and aroma. It is commonly used in Indian, Middle Eastern, '
    'and Scandinavian cuisines, and is often used to flavor soups, stews, and curries. Dill is also used '
    'to make pickles, sauces, and marinades, and is a popular ingredient in many vegetarian and vegan dishes. '
    'In addition to its culinary uses, dill is also known for its medicinal properties, and is often used '
    'to treat digestive issues, respiratory problems, and skin conditions.\nReview: The response can be more '
    'correct and verbose by\nIncluding specific recipes that use dill as a main ingredient or flavor enhancer.\nExplaining '
    'the history and cultural significance of dill in different cuisines.\nDescribing the medicinal properties '
    "of dill and its use in traditional medicine.\nRevise the 'Response' based on the 'Review' to improve "
    'its correctness and verbosity.\nASSISTANT:Dill is a versatile herb widely used in home cooking for its '
    'fresh, slightly tangy flavor and aromatic qualities. One of its most common uses is in making pickles, '
    'where its distinct taste enhances the brine. It is also frequently used in soups, stews, and sauces, '
    'such as the classic Greek tzatziki, Scandinavian gravlax sauce, and Russian dill-infused borscht. In '
    'Middle Eastern and Indian cuisines, dill is often added to rice dishes, curries, and yogurt-based dips.\nBeyond '
    'its culinary applications, dill has a long history of use in traditional medicine. Ancient Egyptians '
    'and Greeks valued it for its digestive benefits, and it has been used to alleviate bloating, indigestion, '
    'and colic. Dill also contains compounds with antimicrobial and anti-inflammatory properties, making '
    "it a natural remedy for respiratory and skin conditions.\nOverall, dill's unique flavor and health benefits "
    'make it a staple in kitchens worldwide, enhancing both traditional and contemporary dishes. '
)

REVIEW_TEMPLATE = (REVIEW_DEMO + "\n\n\nQuestion: {prompt}\nResponse: {response}\n"
                   "Generate three suggestions on how to make the response more correct and verbose.")
REVIEW_PREFIX = "The response can be more correct and verbose by\n"
REWRITE_TEMPLATE = (REWRITE_DEMO + "\n\n\nQuestion: {prompt}\nResponse: {response}\nReview: {review}\n"
                    "Revise the 'Response' based on the 'Review' to improve its correctness and verbosity.")
STOP = "Question:"
#: the released generate(max_length=...) of review.py and rewrite.py (README commands)
REVIEW_MAX_LENGTH = 1200
REWRITE_MAX_LENGTH = 1600
